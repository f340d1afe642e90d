#!/usr/bin/env bash
# Benchmark (the changed-blocks issue, item 4), one run, one volume:
# (a) a VOLUME_SIZE (64 GiB) sparse managed volume with ALLOCATED (16 GiB) of text-like,
#     random and zero regions; FRACTION (1 %) of its allocated blocks rewritten through
#     our iSCSI target by qemu-io (single blocks and short runs, text-like or random):
#     the dirty-bitmap incremental against a full-compare incremental of a second such
#     rewrite (tracking invalidated by a write behind the target's back, as a crash
#     would) and against restic's incremental of the same file;
# (b) the server's peak RSS during that full-compare incremental alone (server restarted
#     before it; target <= 256 MiB);
# (c) in the QEMU guest (shared/harness), the kernel initiator attached to the delta
#     volume of the first rewrite: `blockdelta scan /dev/sda --out` against Oracle's
#     documented loop scripted with sg3_utils (sg_get_lba_status -T per 1 GiB scan, dd of
#     each mapped extent); both throughputs, and what each image holds (the bytes
#     themselves are checked by tests/scan_kernel.rs: hashing 64 GiB under TCG takes
#     longer than the scans).
# Prints times and ratios (peer / blockdelta: higher is better for blockdelta).
#
# Usage: bench/changed_blocks.sh [WORKDIR]   (default: a temp dir; ALLOCATED × 3 free)
# Env:   BLOCKDELTA_BIN (skip the release build), VOLUME_SIZE, ALLOCATED, FRACTION, SEED,
#        SKIP_GUEST=1 (no (c)), BLOCKDELTA_SHARED (where shared/harness is).
# Not a test: it takes minutes and its numbers depend on the machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/bd-cbt.XXXXXX)}
VOLUME_SIZE=${VOLUME_SIZE:-$((64 << 30))}
ALLOCATED=${ALLOCATED:-$((16 << 30))}
FRACTION=${FRACTION:-0.01}
SEED=${SEED:-7}
SHARED=${BLOCKDELTA_SHARED:-$ROOT/../shared}
mkdir -p "$WORK"

. "$ROOT/bench/common.sh"
need_commands restic -- restic
build_blockdelta
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

SERVER_PID=
HTTP_PID=
trap '[ -n "$SERVER_PID" ] && kill $SERVER_PID 2>/dev/null; [ -n "$HTTP_PID" ] && kill $HTTP_PID 2>/dev/null; true' EXIT

start_server() {
    : >"$WORK/serve.out"
    "$BD" serve --data-dir "$WORK/bd-data" --grpc-listen 127.0.0.1:0 --iscsi-listen 127.0.0.1:0 \
        >"$WORK/serve.out" 2>>"$WORK/serve.err" &
    SERVER_PID=$!
    for _ in $(seq 300); do grep -q "grpc listening on" "$WORK/serve.out" && break; sleep 0.1; done
    ADDR=$(sed -n 's/^grpc listening on //p' "$WORK/serve.out")
    BLOCKDELTA_TOKEN=$(cat "$WORK/bd-data/admin.token"); export BLOCKDELTA_TOKEN
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }
bd() { "$BD" --server "http://$ADDR" "$@"; }

# Rewrites FRACTION of the allocated blocks through the target (qemu-io on iscsi://).
rewrite_through_target() { # $1 = seed
    local plan="$WORK/plan-$1" url att args=()
    rm -rf "$plan"
    python3 "$ROOT/bench/gen_volume.py" plan "$VOL" "$FRACTION" "$1" "$plan" >"$plan.txt"
    att=$(bd --json volume attach "$VOL_ID")
    url="iscsi://$(echo "$att" | field '["portal"]')/$(echo "$att" | field '["target_iqn"]')/0"
    while read -r c; do args+=(-c "$c"); done <"$plan.txt"
    local t0 t1
    t0=$(now); qemu-io -f raw "${args[@]}" "$url" >/dev/null; t1=$(now)
    echo "rewrote ${#args[@]} / 2 runs through the target in $(elapsed "$t0" "$t1") s"
    bd volume detach "$VOL_ID" >/dev/null
    rm -rf "$plan"
}

timed_backup() { # $1 = label; prints the record's change_source and read_bytes
    local t0 t1 json
    drop_caches; t0=$(now); json=$(bd --json backup create "$VOL_ID" --incremental --wait); t1=$(now)
    T[$1]=$(elapsed "$t0" "$t1")
    echo "$json" >"$WORK/$1.json"
    echo "[$1] $(echo "$json" | field '["change_source"]'), read $(echo "$json" | field '["read_bytes"]') bytes, changed $(echo "$json" | field '["changed_blocks"]') blocks, ${T[$1]} s"
}

declare -A T
start_server
VOL_ID=$(bd --json volume create --name cbt --size "$VOLUME_SIZE" | field '["id"]')
VOL=$(bd --json volume show "$VOL_ID" | field '["path"]')
python3 "$ROOT/bench/gen_volume.py" create "$VOL" "$VOLUME_SIZE" "$ALLOCATED" "$SEED"
echo "volume: $(du -h --apparent-size "$VOL" | cut -f1) apparent, $(du -h "$VOL" | cut -f1) allocated"
t0=$(now); FULL=$(bd --json backup create "$VOL_ID" --wait | field '["id"]'); t1=$(now)
echo "[full] $(elapsed "$t0" "$t1") s"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$WORK/restic-repo"
restic init -q >/dev/null
t0=$(now); restic backup -q "$VOL" >/dev/null; t1=$(now)
echo "[restic full] $(elapsed "$t0" "$t1") s"

# (a) the dirty-bitmap incremental, and restic's of the same change.
rewrite_through_target $((SEED + 1))
timed_backup dirty
INC1=$(field '["id"]' <"$WORK/dirty.json")
drop_caches; t0=$(now); restic backup -q "$VOL" >/dev/null; t1=$(now)
T[restic]=$(elapsed "$t0" "$t1")
echo "[restic incremental] ${T[restic]} s"

# (a, b) a second rewrite, tracking invalidated: the full-compare incremental, measured
# alone in a fresh server.
rewrite_through_target $((SEED + 2))
stop_server
touch "$VOL"
start_server
timed_backup compare
RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")

echo
printf '%-44s %10.2fs\n' "dirty-bitmap incremental" "${T[dirty]}"
printf '%-44s %10.2fs  %6.1fx  (target >= 20)\n' "full-compare incremental" "${T[compare]}" \
    "$(echo "${T[compare]} / ${T[dirty]}" | bc -l)"
printf '%-44s %10.2fs  %6.1fx\n' "restic incremental" "${T[restic]}" "$(echo "${T[restic]} / ${T[dirty]}" | bc -l)"
echo "(b) server peak RSS during the full-compare incremental: $((RSS_KB / 1024)) MiB (target <= 256)"

# (c) scan --out of the delta in the guest, against Oracle's loop.
if [ "${SKIP_GUEST:-}" = 1 ]; then exit 0; fi
DELTA=$(bd --json volume create --from-delta --first-backup "$FULL" --second-backup "$INC1" | field '["id"]')
ATT=$(bd --json volume attach "$DELTA" --block-size 512)
IQN=$(echo "$ATT" | field '["target_iqn"]')
PORT=$(echo "$ATT" | field '["portal"]' | sed 's/.*://')
CHANGED=$(bd --json volume show "$DELTA" | field '["changed_bytes"]')
BLOCKS=$((VOLUME_SIZE / 512))
bundle="$WORK/bundle"; rm -rf "$bundle"; mkdir -p "$bundle/bin"
objcopy --strip-debug "$BD" "$bundle/bin/blockdelta" 2>/dev/null || cp "$BD" "$bundle/bin/blockdelta"
for lib in $(ldd "$BD" | grep -o '/[^ ]*\(libgcc_s\|libm\.\)[^ ]*'); do
    mkdir -p "$bundle$(dirname "$lib")"; cp -L "$lib" "$bundle$lib"
done
tar czf "$WORK/bd.tgz" -C "$bundle" .
HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$WORK" && exec python3 -m http.server --bind 127.0.0.1 "$HTTP_PORT" >/dev/null 2>&1) &
HTTP_PID=$!
cat >"$WORK/guest.sh" <<EOF
wget -q -O /tmp/bd.tgz http://10.0.2.2:$HTTP_PORT/bd.tgz
tar xzf /tmp/bd.tgz -C /; rm /tmp/bd.tgz
iscsistart -i iqn.2026-11.io.blockdelta:guest -t $IQN -g 1 -a 10.0.2.2 -p $PORT
for i in \$(seq 1 20); do [ -b /dev/sda ] && break; sleep 1; done
up() { cut -d' ' -f1 /proc/uptime; }
t0=\$(up); blockdelta scan /dev/sda --out /tmp/bd.img >/dev/null 2>&1; t1=\$(up)
echo "== blockdelta \$t0 \$t1 \$(du -k /tmp/bd.img | cut -f1)"
rm /tmp/bd.img
# Oracle's steps: GET LBA STATUS(32) 1 GiB at a time, from the end of the last
# descriptor, and dd of each mapped extent into an image of the volume's size.
dd if=/dev/zero of=/tmp/oracle.img bs=1 count=0 seek=$VOLUME_SIZE 2>/dev/null
t0=\$(up); lba=0
while [ \$lba -lt $BLOCKS ]; do
  sg_get_lba_status -b -T -s 2097152 -m 65544 -l \$lba /dev/sda > /tmp/d.txt
  end=\$lba
  while read a b c d; do
    case "\$a" in 0x*) ;; *) continue ;; esac
    [ -n "\$d" ] || continue
    s=\$((a)); n=\$((b)); end=\$((s + n))
    if [ "\$c" = 0 ] || [ "\$c" = 3 ]; then
      if [ \$((s % 8)) = 0 ] && [ \$((n % 8)) = 0 ]; then
        dd if=/dev/sda of=/tmp/oracle.img bs=4096 skip=\$((s / 8)) seek=\$((s / 8)) count=\$((n / 8)) conv=notrunc 2>/dev/null
      else
        dd if=/dev/sda of=/tmp/oracle.img bs=512 skip=\$s seek=\$s count=\$n conv=notrunc 2>/dev/null
      fi
    fi
  done < /tmp/d.txt
  [ \$end -gt \$lba ] || { echo "no progress at \$lba"; exit 1; }
  lba=\$end
done
t1=\$(up)
echo "== oracle \$t0 \$t1 \$(du -k /tmp/oracle.img | cut -f1)"
echo "== end"
EOF
GUEST_MEM=1536 GUEST_TIMEOUT=1800 bash "$SHARED/harness/guest-run.sh" "$WORK/guest.sh" >"$WORK/guest.log" 2>&1 || {
    echo "guest failed: $WORK/guest.log"; tail -30 "$WORK/guest.log"; exit 1; }
read -r _ _ b0 b1 bk < <(grep -a '^== blockdelta' "$WORK/guest.log")
read -r _ _ o0 o1 ok < <(grep -a '^== oracle' "$WORK/guest.log")
BT=$(echo "$b1 - $b0" | bc); OT=$(echo "$o1 - $o0" | bc)
echo
echo "(c) in the guest (TCG), a $((VOLUME_SIZE >> 30)) GiB delta with $CHANGED changed bytes:"
printf '    %-52s %8.2fs  %8.1f MB/s\n' "blockdelta scan /dev/sda --out" "$BT" "$(echo "$CHANGED / $BT / 1000000" | bc -l)"
printf '    %-52s %8.2fs  %8.1f MB/s  (%.1fx)\n' "Oracle's loop (sg_get_lba_status -T, dd per extent)" "$OT" \
    "$(echo "$CHANGED / $OT / 1000000" | bc -l)" "$(echo "$OT / $BT" | bc -l)"
echo "    image blocks allocated: blockdelta $bk KiB, Oracle's loop $ok KiB (the guest test checks the bytes)"
