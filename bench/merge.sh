#!/usr/bin/env bash
# Benchmark (issue 13, item 2): `backup merge` against a full backup, in one run, on two
# kinds of 4 GiB volume (sparse: regions of text, random and zeros with holes between,
# ~1.6 GB allocated; mixed: every block written, nothing deduplicating).
#
# For each: a full backup (timed), ten incrementals after 1 % of the blocks changed each
# time, then `backup merge` of the tenth (timed): the full and all ten incrementals
# become one synthetic full. A merge reads no volume byte and rewrites no frame, so its
# time is metadata work: target <= 1/20 of the full's (timed: the CLI's call, from the
# client's start to its answer; gc follows in the background). The merged backup is then verified
# (every frame it names, every block against its fingerprint) and restored, and the
# restore compared with the volume.
#
# Usage: bench/merge.sh [WORKDIR]   (default: a temp dir; ~20 GB free needed)
# Env:   BLOCKDELTA_BIN (skip the release build), SEED.
# Not a test: it takes minutes and its numbers depend on the machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/bd-merge-bench.XXXXXX)}
SEED=${SEED:-42}
SIZE=$((4 << 30))
mkdir -p "$WORK"
. "$ROOT/bench/common.sh"
build_blockdelta

PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; }
trap cleanup EXIT
RUST_LOG=warn "$BD" serve --data-dir "$WORK/data" --grpc-listen 127.0.0.1:0 \
    --iscsi-listen 127.0.0.1:0 --volume-root "$WORK" >"$WORK/serve.out" 2>"$WORK/serve.err" &
PID=$!
for _ in $(seq 300); do grep -q "grpc listening on" "$WORK/serve.out" && break; sleep 0.1; done
ADDR=$(sed -n 's/^grpc listening on //p' "$WORK/serve.out")
bd() { BLOCKDELTA_TOKEN=$(cat "$WORK/data/admin.token") "$BD" --server "http://$ADDR" "$@"; }
json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.readline())['$1'])"; }

printf '%-7s %12s %12s %12s %9s %8s\n' volume full merge "merged" "ratio" restore
for kind in sparse mixed; do
    VOL="$WORK/$kind.img"
    if [ "$kind" = sparse ]; then
        python3 "$ROOT/bench/gen_volume.py" create "$VOL" "$SIZE" 1600000000 "$SEED"
    else
        python3 "$ROOT/bench/gen_volume.py" mixed "$VOL" "$SIZE" "$SEED"
    fi
    sync
    bd volume register --name "$kind" --path "$VOL" >/dev/null
    t0=$(now)
    bd backup create "$kind" --wait >/dev/null
    t1=$(now)
    full=$(elapsed "$t0" "$t1")
    last=
    for i in $(seq 1 10); do
        python3 "$ROOT/bench/gen_volume.py" change "$VOL" 0.01 $((SEED + i)) >/dev/null
        sync
        last=$(bd --json backup create "$kind" --incremental --wait | json_field id)
    done
    t0=$(now)
    out=$(bd --json backup merge "$last")
    t1=$(now)
    merge=$(elapsed "$t0" "$t1")
    merged=$(echo "$out" | json_field merged)
    bd --json backup verify "$last" | grep -q '"ok":true'
    restored=$(bd --json backup restore "$last" --wait | json_field path)
    if cmp -s "$VOL" "$restored"; then same=identical; else same=DIFFERENT; fi
    rm -f "$restored"
    printf '%-7s %11.2fs %11.3fs %12s %8.1fx %8s\n' "$kind" "$full" "$merge" "$merged" \
        "$(echo "$full / $merge" | bc -l)" "$same"
    rm -f "$VOL"
done
echo "(ratio: full backup time / merge time; target >= 20x)"
rm -rf "$WORK"
