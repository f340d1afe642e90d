#!/usr/bin/env bash
# Benchmark (delta-volume issue, item 5). Four measurements, each against its peer
# in the same run:
#  1. Delta creation (CreateVolume from two backups) on a synthetic 1 TiB volume
#     with a chain of 10 incrementals: cold (first call after a server restart)
#     and warm, in ms. Target: <= 50 ms.
#  2. A whole-volume GET LBA STATUS scan over iSCSI of a 64 GiB delta volume, in
#     1 GiB scans (32-byte CDB, Oracle's way) and 16-byte CDBs, against tgt
#     scanning a sparse file with exactly the same extents (16-byte; tgt has no
#     32-byte form). Ratio = tgt time / ours.
#  3. Reading every changed extent of a delta volume (4 GiB volume, ~25 % of its
#     blocks changed) through the built-in target, against reading the same byte
#     ranges of the restored raw volume through the same target. Target >= 0.5.
#  4. Learning the delta the naive way (restore both backups, compare them) against
#     CreateVolume + ListChangedBlocks, on the same 4 GiB volume. Ratio = naive / ours.
#
# Usage: bench/delta_bench.sh [WORKDIR]   (default: a temp dir; needs ~20 GB free)
# Needs tgt and python grpcio-tools: scripts/test installs them. Not a test.
set -euo pipefail
export RUST_BACKTRACE=0

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/bd-delta-bench.XXXXXX)}
mkdir -p "$WORK"
for t in tgtd tgtadm python3; do
  command -v $t >/dev/null || { echo "$t missing: run scripts/test once"; exit 1; }
done
(cd "$ROOT" && cargo build --release -q -p blockdelta && cargo build --release -q -p target-emulator --example lba_scan --features initiator)
BD=$ROOT/target/release/blockdelta
SCAN=$ROOT/target/release/examples/lba_scan
GEN="python3 $ROOT/bench/gen_volume.py"
# grpcio lives in the venv scripts/test makes (target/venv).
PY=python3; [ -x "$ROOT/target/venv/bin/python3" ] && PY="$ROOT/target/venv/bin/python3"
CLIENT="$PY $ROOT/bench/delta_client.py"
GIB=$((1 << 30))

SERVER_PID=
TGT_PID=
CTL=$((20000 + RANDOM % 10000))
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  if [ -n "$TGT_PID" ]; then
    tgtadm -C "$CTL" --mode sys --op update --name State -v offline >/dev/null 2>&1 || true
    tgtadm -C "$CTL" --mode target --op delete --tid 1 --force >/dev/null 2>&1 || true
    kill -9 "$TGT_PID" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
}
trap cleanup EXIT

start_server() {
  "$BD" serve --data-dir "$WORK/bd-data" --grpc-listen 127.0.0.1:0 --iscsi-listen 127.0.0.1:0 --volume-root "$WORK" \
    >"$WORK/serve.out" 2>>"$WORK/serve.err" &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q "grpc listening on" "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
  ADDR=$(sed -n 's/^grpc listening on //p' "$WORK/serve.out")
  # Every call carries the admin token the first start wrote (the CLI and delta_client.py
  # read BLOCKDELTA_TOKEN): the figures include authentication.
  BLOCKDELTA_TOKEN=$(cat "$WORK/bd-data/admin.token"); export BLOCKDELTA_TOKEN
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }
bd() { "$BD" --server "http://$ADDR" "$@"; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.readline())['$1'])"; }
backup() { bd --json backup create "$@" --wait | field id; }
val() { sed -n "s/.*\b$1 \([0-9.]*\).*/\1/p"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

rm -rf "$WORK/bd-data"
start_server

echo "== 1. delta creation, 1 TiB volume, chain of 10 incrementals"
$GEN create "$WORK/tib.img" $((1 << 40)) $((256 << 20)) 1 >/dev/null
bd volume register --name tib --path "$WORK/tib.img" >/dev/null
FULL=$(backup tib)
for i in $(seq 10); do
  $GEN change "$WORK/tib.img" 0.0001 $((100 + i)) >/dev/null
  LAST=$(backup tib --incremental)
done
# The backups' bytes reach the disk before anything is timed: fsyncs queued behind their
# writeback would time the disk, not the delta.
sync
stop_server; start_server
C4K=$($CLIENT "$ADDR" create "$FULL" "$LAST" 4096 10)
C1M=$($CLIENT "$ADDR" create "$FULL" "$LAST" 1048576 10)
printf '%-44s %10s %10s %16s\n' "" "cold ms" "warm ms" "changed bytes"
printf '%-44s %10s %10s %16s\n' "create delta (full, inc10), 4 KiB blocks" \
  "$(echo "$C4K" | val first_ms)" "$(echo "$C4K" | val median_ms)" "$(echo "$C4K" | val changed_bytes)"
printf '%-44s %10s %10s %16s\n' "create delta (full, inc10), 1 MiB blocks" \
  "$(echo "$C1M" | val first_ms)" "$(echo "$C1M" | val median_ms)" "$(echo "$C1M" | val changed_bytes)"
echo "target: <= 50 ms"
rm -f "$WORK/tib.img"

echo; echo "== 2. whole-volume GET LBA STATUS scan of a 64 GiB delta volume"
$GEN create "$WORK/g64.img" $((64 << 30)) $((512 << 20)) 2 >/dev/null
bd volume register --name g64 --path "$WORK/g64.img" >/dev/null
F64=$(backup g64)
$GEN change "$WORK/g64.img" 0.002 3 >/dev/null
I64=$(backup g64 --incremental)
D64=$(bd --json volume create --from-delta --first-backup "$F64" --second-backup "$I64" | field id)
ATT=$(bd --json volume attach "$D64")
PORTAL=$(echo "$ATT" | field portal); IQN=$(echo "$ATT" | field target_iqn)
OURS32=$("$SCAN" --portal "$PORTAL" --target "$IQN" --cdb 32 --scan-bytes $GIB --save-ranges "$WORK/ranges64.json")
OURS16=$("$SCAN" --portal "$PORTAL" --target "$IQN" --cdb 16)
$CLIENT - sparse "$WORK/peer64.img" $((64 << 30)) "$WORK/ranges64.json"
TGT_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tgtd -f -C "$CTL" --iscsi portal=127.0.0.1:$TGT_PORT >"$WORK/tgt.log" 2>&1 &
TGT_PID=$!
for _ in $(seq 50); do tgtadm -C "$CTL" --op show --mode target >/dev/null 2>&1 && break; sleep 0.1; done
tgtadm -C "$CTL" --lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.io.blockdelta:tgt-peer
tgtadm -C "$CTL" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$WORK/peer64.img"
tgtadm -C "$CTL" --lld iscsi --op bind --mode target --tid 1 -I ALL
TGT16=$("$SCAN" --portal 127.0.0.1:$TGT_PORT --target iqn.2026-11.io.blockdelta:tgt-peer --lun 1 --cdb 16)
printf '%-34s %10s %10s %10s %10s %8s\n' "" extents mapped commands seconds "tgt/ours"
for row in "blockdelta GLS(32), 1 GiB scans|$OURS32" "blockdelta GLS(16)|$OURS16" "tgt GLS(16), same extents|$TGT16"; do
  name=${row%%|*}; r=${row#*|}
  printf '%-34s %10s %10s %10s %10s %8s\n' "$name" "$(echo "$r" | val extents)" "$(echo "$r" | val mapped)" \
    "$(echo "$r" | val commands)" "$(echo "$r" | val seconds)" \
    "$(ratio "$(echo "$TGT16" | val seconds)" "$(echo "$r" | val seconds)")"
done
bd volume detach "$D64" >/dev/null; bd volume delete "$D64" >/dev/null
rm -f "$WORK/peer64.img" "$WORK/g64.img"

echo; echo "== 3. reading the changed extents: delta volume vs the restored volume, same target"
$GEN create "$WORK/v4.img" $((4 << 30)) 1700000000 4 >/dev/null
bd volume register --name v4 --path "$WORK/v4.img" >/dev/null
F4=$(backup v4)
$GEN change "$WORK/v4.img" 0.25 5 >/dev/null
I4=$(backup v4 --incremental)
D4=$(bd --json volume create --from-delta --first-backup "$F4" --second-backup "$I4" | field id)
ATT=$(bd --json volume attach "$D4")
DELTA_READ=$("$SCAN" --portal "$(echo "$ATT" | field portal)" --target "$(echo "$ATT" | field target_iqn)" \
  --save-ranges "$WORK/ranges4.json" --read | tail -1)
R4=$(bd --json backup restore "$I4" --wait --name restored-v4 | field id)
ATT=$(bd --json volume attach "$R4" --read-only)
RAW_READ=$("$SCAN" --portal "$(echo "$ATT" | field portal)" --target "$(echo "$ATT" | field target_iqn)" \
  --ranges "$WORK/ranges4.json" | tail -1)
printf '%-40s %14s %10s %10s\n' "" bytes seconds "MB/s"
printf '%-40s %14s %10s %10s\n' "delta volume, changed extents" "$(echo "$DELTA_READ" | val read_bytes)" \
  "$(echo "$DELTA_READ" | val read_seconds)" "$(echo "$DELTA_READ" | val read_mb_s)"
printf '%-40s %14s %10s %10s\n' "restored raw volume, same ranges" "$(echo "$RAW_READ" | val read_bytes)" \
  "$(echo "$RAW_READ" | val read_seconds)" "$(echo "$RAW_READ" | val read_mb_s)"
echo "delta / raw throughput: $(ratio "$(echo "$DELTA_READ" | val read_mb_s)" "$(echo "$RAW_READ" | val read_mb_s)") (target >= 0.5)"
bd volume detach "$D4" >/dev/null; bd volume delete "$D4" >/dev/null
bd volume detach "$R4" >/dev/null

echo; echo "== 4. the naive alternative: restore both backups and compare (same 4 GiB volume)"
t0=$(date +%s.%N)
RF=$(bd --json backup restore "$F4" --wait --name naive-first | field path)
RS=$(bd --json backup restore "$I4" --wait --name naive-second | field path)
t1=$(date +%s.%N)
CMP=$($CLIENT - compare "$RF" "$RS")
NAIVE=$(python3 -c "print(f'{$t1 - $t0 + $(echo "$CMP" | val seconds):.3f}')")
OURS=$($CLIENT "$ADDR" list "$F4" "$I4" "$WORK/list4.json")
printf '%-48s %10s %10s\n' "" seconds blocks
printf '%-48s %10s %10s\n' "naive: restore both ($(python3 -c "print(f'{$t1 - $t0:.2f}')") s) + compare" "$NAIVE" \
  "$(echo "$CMP" | val changed_blocks)"
printf '%-48s %10s %10s\n' "blockdelta: CreateVolume + ListChangedBlocks" "$(echo "$OURS" | val seconds)" \
  "$(( $(echo "$OURS" | val bytes) / 4096 ))"
echo "naive / blockdelta: $(ratio "$NAIVE" "$(echo "$OURS" | val seconds)")"
RSS_KB=$(awk '/VmHWM/ {print $2}' /proc/$SERVER_PID/status)
echo; echo "server peak RSS: $((RSS_KB / 1024)) MiB"
