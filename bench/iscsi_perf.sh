#!/usr/bin/env bash
# Read throughput of our iSCSI target against Debian's tgt, same file, same run, same client.
#
# libiscsi's iscsi-perf drives both (Debian's fio has no libiscsi engine): sequential 4 KiB,
# 128 KiB and 1 MiB requests, and random 4 KiB, each for SECONDS seconds. Prints IOPS and MB/s
# of each and the ratio ours/tgt (target: >= 1.0 on every row).
#   bench/iscsi_perf.sh [SECONDS]        (default 10; needs libiscsi-bin and tgt: scripts/test installs them)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
for t in iscsi-perf tgtd tgtadm; do
  command -v $t >/dev/null || { echo "$t missing: run scripts/test once (it installs libiscsi-bin and tgt)"; exit 1; }
done
cargo build --release -q -p target-emulator
work=$(mktemp -d)
ctl=$((20000 + RANDOM % 10000))
cleanup() {
  kill "${ours_pid:-}" 2>/dev/null || true
  # tgtd -f ignores SIGTERM while it has targets: take them down, then make sure.
  tgtadm -C "$ctl" --mode sys --op update --name State -v offline >/dev/null 2>&1 || true
  tgtadm -C "$ctl" --mode target --op delete --tid 1 --force >/dev/null 2>&1 || true
  tgtadm -C "$ctl" --op delete --mode system >/dev/null 2>&1 || true
  sleep 1
  kill -9 "${tgt_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

img=$work/bench.img
head -c 1G /dev/urandom > "$img"
cat "$img" > /dev/null   # both targets read from a warm page cache

target/release/target-emulator --file "$img" --read-only --portal 127.0.0.1:0 > "$work/ours.out" 2> "$work/ours.err" &
ours_pid=$!
for _ in $(seq 50); do [ -s "$work/ours.out" ] && break; sleep 0.1; done
read -r _ ours_iqn _ _ ours_portal < "$work/ours.out"
ours_url="iscsi://$ours_portal/$ours_iqn/0"

tgt_port=$(free_port)
tgtd -f -C "$ctl" --iscsi portal=127.0.0.1:$tgt_port > "$work/tgt.log" 2>&1 &
tgt_pid=$!
for _ in $(seq 50); do tgtadm -C "$ctl" --op show --mode target >/dev/null 2>&1 && break; sleep 0.1; done
tgtadm -C "$ctl" --lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.io.blockdelta:tgt-bench
tgtadm -C "$ctl" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$img"
tgtadm -C "$ctl" --lld iscsi --op bind --mode target --tid 1 -I ALL
tgt_url="iscsi://127.0.0.1:$tgt_port/iqn.2026-11.io.blockdelta:tgt-bench/1"

# iscsi-perf prints a final "iops average N (M MB/s)"; print "N M".
perf() {
  timeout $((secs + 20)) iscsi-perf -t "$secs" "$@" 2>&1 | tr '\r' '\n' | grep -o 'iops average [0-9]* ([0-9]* MB/s)' | tail -1 | awk '{gsub("\\(",""); print $3, $4}'
}

printf '%-22s %12s %10s %12s %10s %8s\n' workload "ours IOPS" "ours MB/s" "tgt IOPS" "tgt MB/s" ours/tgt
row() {
  local name=$1; shift
  read -r o_iops o_mbs < <(perf "$@" "$ours_url")
  read -r t_iops t_mbs < <(perf "$@" "$tgt_url")
  ratio=$(python3 -c "print(f'{$o_iops/$t_iops:.2f}')" 2>/dev/null || echo "n/a")
  printf '%-22s %12s %10s %12s %10s %8s\n' "$name" "$o_iops" "$o_mbs" "$t_iops" "$t_mbs" "$ratio"
}
row "seq 4KiB  (-b 8 -m 32)" -b 8 -m 32
row "seq 128KiB (-b 256 -m 16)" -b 256 -m 16
row "seq 1MiB (-b 2048 -m 8)" -b 2048 -m 8
row "random 4KiB (-r)" -r -b 8 -m 32
