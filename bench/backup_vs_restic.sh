#!/usr/bin/env bash
# Benchmark (issue 3, item 4): blockdelta against restic, same volume, same run.
#
# Two kinds of volume, each in turn:
# - sparse: 4 GiB, ~1.7 GB allocated in regions of text-like, random and zero data;
# - mixed: 2 GiB (MIXED_SIZE), every block written, in short runs of 35 % text-like,
#   25 % binary-like, 25 % random and 15 % explicit zeros, each non-zero block
#   stamped so nothing deduplicates (the faults issue's "volume the benchmark never saw").
# Each gets a full backup, then ~6 % and ~2 % of its 4 KiB blocks are rewritten in
# scattered places, each followed by a backup; then the last generation is restored
# (restic's restore timed with a sync, as ours is durable when it returns; both from a
# cold page cache). Prints
# each tool's times and repository sizes and the ratios (restic / blockdelta for
# time: higher is better for blockdelta; blockdelta / restic for size: lower is
# better), the blockdelta server's peak RSS, and two more peers measured in the same
# run: zstd -1 alone over the volume on every core, and writing the restored bytes
# durably with dd (a floor for any restore on this machine's disk).
#
# Usage: bench/backup_vs_restic.sh [WORKDIR]   (default: a temp dir; ~15 GB free needed)
# Env:   BLOCKDELTA_BIN (skip the release build), VOLUME_SIZE (bytes, default 4 GiB), ALLOCATED (default 1.7e9),
#        MIXED_SIZE (default 2 GiB), KINDS (default "sparse mixed"), SEED.
# Not a test: it takes minutes and its numbers depend on the machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/bd-bench.XXXXXX)}
VOLUME_SIZE=${VOLUME_SIZE:-$((4 << 30))}
ALLOCATED=${ALLOCATED:-1700000000}
SEED=${SEED:-42}
MIXED_SIZE=${MIXED_SIZE:-$((2 << 30))}
KINDS=${KINDS:-sparse mixed}
mkdir -p "$WORK"

. "$ROOT/bench/common.sh"
need_commands restic zstd -- restic zstd
build_blockdelta
size_of() { du -sb "$1" | cut -f1; }

bench_kind() { # $1 = sparse | mixed
    local kind=$1 dir="$WORK/$1"
    rm -rf "$dir"; mkdir -p "$dir"
    local VOL="$dir/volume.img"
    if [ "$kind" = sparse ]; then
        python3 "$ROOT/bench/gen_volume.py" create "$VOL" "$VOLUME_SIZE" "$ALLOCATED" "$SEED"
    else
        python3 "$ROOT/bench/gen_volume.py" mixed "$VOL" "$MIXED_SIZE" "$SEED"
    fi
    echo "[$kind] volume: $(du -h --apparent-size "$VOL" | cut -f1) apparent, $(du -h "$VOL" | cut -f1) allocated"

    "$BD" serve --data-dir "$dir/bd-data" --grpc-listen 127.0.0.1:0 --iscsi-listen 127.0.0.1:0 --volume-root "$dir" \
        >"$dir/serve.out" 2>"$dir/serve.err" &
    SERVER_PID=$!
    for _ in $(seq 100); do grep -q "grpc listening on" "$dir/serve.out" && break; sleep 0.1; done
    local ADDR
    ADDR=$(sed -n 's/^grpc listening on //p' "$dir/serve.out")
    BLOCKDELTA_TOKEN=$(cat "$dir/bd-data/admin.token"); export BLOCKDELTA_TOKEN
    bd() { "$BD" --server "http://$ADDR" "$@"; }
    bd volume register --name bench --path "$VOL" >/dev/null

    export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$dir/restic-repo"
    restic init -q >/dev/null

    declare -A T S
    run_gen() { # $1 = generation label, $2 = blockdelta flags
        local t0 t1
        sync; t0=$(now); bd backup create bench --wait $2 >/dev/null; t1=$(now)
        T[bd_$1]=$(elapsed "$t0" "$t1"); S[bd_$1]=$(size_of "$dir/bd-data/repository")
        sync; t0=$(now); restic backup -q "$VOL" >/dev/null; t1=$(now)
        T[restic_$1]=$(elapsed "$t0" "$t1"); S[restic_$1]=$(size_of "$dir/restic-repo")
    }

    run_gen full ""
    python3 "$ROOT/bench/gen_volume.py" change "$VOL" 0.06 $((SEED + 1))
    run_gen inc1 "--incremental"
    python3 "$ROOT/bench/gen_volume.py" change "$VOL" 0.02 $((SEED + 2))
    run_gen inc2 "--incremental"

    # How long compressing alone takes here: zstd's own CLI at level 1 on every core
    # over the same volume, output discarded (blockdelta also compresses at level 1).
    local FLOOR_ZSTD FLOOR_WRITE
    t0=$(now); zstd -q -1 -T0 -B131072 -c "$VOL" >/dev/null; t1=$(now)
    FLOOR_ZSTD=$(elapsed "$t0" "$t1")

    local LAST t0 t1
    LAST=$(bd --json backup list | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    # Restores start with a cold page cache, both tools: a restore runs long after
    # its backup, and only restic's repository would still be cached otherwise
    # (blockdelta writes packs with O_DIRECT).
    drop_caches; t0=$(now); bd backup restore "$LAST" --wait --name restored >/dev/null; t1=$(now)
    T[bd_restore]=$(elapsed "$t0" "$t1")
    drop_caches; t0=$(now); restic restore -q latest --target "$dir/restic-restore" >/dev/null; sync; t1=$(now)
    T[restic_restore]=$(elapsed "$t0" "$t1")

    local RESTORED want got IDENT RSS_KB
    RESTORED=$(bd --json volume show restored | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])')
    want=$(b3sum --no-names "$VOL" 2>/dev/null || sha256sum "$VOL" | cut -d' ' -f1)
    got=$(b3sum --no-names "$RESTORED" 2>/dev/null || sha256sum "$RESTORED" | cut -d' ' -f1)
    [ "$want" = "$got" ] && IDENT=yes || IDENT=NO
    RSS_KB=$(awk '/VmHWM/ {print $2}' /proc/$SERVER_PID/status)
    # ... and writing the restored bytes durably (zero blocks skipped, as a restore does).
    sync; t0=$(now)
    dd if="$RESTORED" of="$dir/floor.img" bs=1M conv=sparse,fsync status=none; t1=$(now)
    FLOOR_WRITE=$(elapsed "$t0" "$t1"); rm -f "$dir/floor.img"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

    printf '\n[%s] %-17s %12s %12s %10s\n' "$kind" "" blockdelta restic ratio
    for g in full inc1 inc2 restore; do
        printf '[%s] %-17s %11.2fs %11.2fs %9.1fx\n' "$kind" "time $g" "${T[bd_$g]}" "${T[restic_$g]}" \
            "$(echo "${T[restic_$g]} / ${T[bd_$g]}" | bc -l)"
    done
    for g in full inc1 inc2; do
        printf '[%s] %-17s %11.2fG %11.2fG %9.2fx\n' "$kind" "repo after $g" \
            "$(echo "${S[bd_$g]} / 1000000000" | bc -l)" "$(echo "${S[restic_$g]} / 1000000000" | bc -l)" \
            "$(echo "${S[bd_$g]} / ${S[restic_$g]}" | bc -l)"
    done
    echo "[$kind] restore byte-identical: $IDENT; server peak RSS: $((RSS_KB / 1024)) MiB (target < 512)"
    printf '[%s] compressing alone (zstd -1 -T0): %.2fs, restic full / that = %.1fx\n' \
        "$kind" "$FLOOR_ZSTD" "$(echo "${T[restic_full]} / $FLOOR_ZSTD" | bc -l)"
    printf '[%s] writing the restored bytes durably alone (dd): %.2fs, restic restore / that = %.1fx (no restore can beat it)\n' \
        "$kind" "$FLOOR_WRITE" "$(echo "${T[restic_restore]} / $FLOOR_WRITE" | bc -l)"
    rm -rf "$dir/restic-restore" "$dir/bd-data/volumes"
}

SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill $SERVER_PID 2>/dev/null || true' EXIT
for kind in $KINDS; do bench_kind "$kind"; done
echo
echo "time ratio = restic / blockdelta (targets: sparse full >= 3, incrementals >= 4, restore >= 3;"
echo "            mixed full >= 5, incrementals >= 10, restore >= 3)"
echo "size ratio = blockdelta / restic (target after inc2 <= 0.6)"
