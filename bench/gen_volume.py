#!/usr/bin/env python3
"""Seeded benchmark volumes for bench/backup_vs_restic.sh.

  gen_volume.py create PATH SIZE_BYTES ALLOCATED_BYTES SEED
      a sparse volume: regions of text-like, random and explicit-zero data
      scattered over SIZE, about ALLOCATED bytes in all, holes between.
  gen_volume.py mixed PATH SIZE_BYTES SEED
      a dense volume unlike the one above: every block written, in runs of
      1-64 blocks: 35 % text-like, 25 % binary-like (structured records,
      small integers, pointers), 25 % random, 15 % explicit zeros. Every
      non-zero block starts with a unique stamp, so nothing deduplicates.
  gen_volume.py change PATH FRACTION SEED
      rewrites about FRACTION of the volume's 4 KiB blocks in scattered
      places (single blocks and short runs), text-like or random.
  gen_volume.py plan PATH FRACTION SEED DIR
      the same kind of rewrite of about FRACTION of the volume's *allocated*
      blocks, not done but planned for a host to do through iSCSI: each run's
      bytes go to DIR/N.bin and a qemu-io command per run is printed
      (`write -q -s DIR/N.bin OFFSET LENGTH`).

Every 4 KiB block of text gets a unique first line, so neither tool can
deduplicate what a real volume would not let it.
"""
import os
import random
import sys

BLOCK = 4096
WORDS = (b"block delta backup volume extent chain restore the of and data sector "
         b"iscsi target lun snapshot incremental full zero hole table index page").split()


def corpus(rng, size):
    out = bytearray()
    while len(out) < size:
        line = b" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        out += line + b"\n"
    return bytes(out[:size])


def text_blocks(rng, base, first_block, count, tag):
    out = bytearray()
    for i in range(count):
        off = rng.randrange(0, len(base) - BLOCK)
        head = b"block %d gen %s\n" % (first_block + i, tag)
        out += head + base[off:off + BLOCK - len(head)]
    return bytes(out)


def create(path, size, allocated, seed):
    rng = random.Random(seed)
    base = corpus(rng, 8 << 20)
    blocks = size // BLOCK
    # Regions of 1-32 MiB, each in its own 32 MiB slot, so they never overlap
    # and the allocated total is what was asked for.
    slot = 8192
    slots = list(range(blocks // slot))
    rng.shuffle(slots)
    with open(path, "wb") as f:
        f.truncate(size)
        done = 0
        while done < allocated and slots:
            count = min(rng.randint(256, slot), (allocated - done) // BLOCK + 1)
            start = slots.pop() * slot + rng.randrange(0, slot - count + 1)
            kind = rng.random()
            if kind < 0.45:
                data = text_blocks(rng, base, start, count, b"0")
            elif kind < 0.85:
                data = os.urandom(count * BLOCK)
            else:
                data = bytes(count * BLOCK)
            f.seek(start * BLOCK)
            f.write(data)
            done += count * BLOCK
    print(f"created {path}: {size} bytes, ~{allocated} written")


def binary_blocks(rng, first_block, count, tag):
    """Record-like binary: a stamp, then 16-byte records of small integers, offsets
    and flags, the way database pages and executables look (compresses ~2-3x)."""
    out = bytearray()
    for i in range(count):
        block = bytearray(b"BIN %d %s\n" % (first_block + i, tag))
        key = rng.randrange(1 << 20)
        while len(block) < BLOCK:
            key += rng.randrange(1, 64)
            block += key.to_bytes(4, "little")
            block += rng.randrange(256).to_bytes(2, "little")
            block += (rng.randrange(1 << 12) * 8).to_bytes(4, "little")
            block += bytes([rng.choice((0, 0, 1, 2, 0x80)), 0, 0, rng.randrange(4), 0, 0])
        out += block[:BLOCK]
    return bytes(out)


def random_blocks(first_block, count):
    out = bytearray(os.urandom(count * BLOCK))
    for i in range(count):
        stamp = b"RND %d\n" % (first_block + i)
        out[i * BLOCK:i * BLOCK + len(stamp)] = stamp
    return bytes(out)


def mixed(path, size, seed):
    rng = random.Random(seed)
    base = corpus(rng, 8 << 20)
    blocks = size // BLOCK
    with open(path, "wb") as f:
        at = 0
        while at < blocks:
            count = min(rng.randint(1, 64), blocks - at)
            kind = rng.random()
            if kind < 0.35:
                data = text_blocks(rng, base, at, count, b"m")
            elif kind < 0.60:
                data = binary_blocks(rng, at, count, b"m")
            elif kind < 0.85:
                data = random_blocks(at, count)
            else:
                data = bytes(count * BLOCK)
            f.write(data)
            at += count
    print(f"created {path}: {size} bytes, every block written (mixed)")


def change(path, fraction, seed):
    rng = random.Random(seed)
    base = corpus(rng, 4 << 20)
    size = os.path.getsize(path)
    blocks = size // BLOCK
    target = int(blocks * fraction)
    changed = 0
    with open(path, "r+b") as f:
        while changed < target:
            count = rng.choice([1, 1, 1, 2, 3, 4, 8, 16])
            start = rng.randrange(0, blocks - count)
            if rng.random() < 0.5:
                data = text_blocks(rng, base, start, count, str(seed).encode())
            else:
                data = os.urandom(count * BLOCK)
            f.seek(start * BLOCK)
            f.write(data)
            changed += count
    print(f"changed ~{changed} of {blocks} blocks ({100.0 * changed / blocks:.1f} %)")


def data_runs(path):
    """(first block, blocks) of the file's data, from SEEK_DATA / SEEK_HOLE."""
    runs = []
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        at = 0
        while at < size:
            try:
                data = os.lseek(f.fileno(), at, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(f.fileno(), data, os.SEEK_HOLE)
            first, end = data // BLOCK, (hole + BLOCK - 1) // BLOCK
            if end > first:
                runs.append((first, end - first))
            at = hole
    return runs


def plan(path, fraction, seed, out_dir):
    rng = random.Random(seed)
    base = corpus(rng, 4 << 20)
    runs = data_runs(path)
    allocated = sum(n for _, n in runs)
    target = int(allocated * fraction)
    os.makedirs(out_dir, exist_ok=True)
    changed = n = 0
    while changed < target:
        first, blocks = rng.choices(runs, weights=[b for _, b in runs])[0]
        count = min(rng.choice([1, 1, 1, 2, 3, 4, 8, 16]), blocks)
        start = first + rng.randrange(0, blocks - count + 1)
        if rng.random() < 0.5:
            data = text_blocks(rng, base, start, count, str(seed).encode())
        else:
            data = os.urandom(count * BLOCK)
        src = os.path.join(out_dir, f"{n}.bin")
        with open(src, "wb") as f:
            f.write(data)
        print(f"write -q -s {src} {start * BLOCK} {count * BLOCK}")
        changed += count
        n += 1
    print(f"planned {n} writes, ~{changed} of {allocated} allocated blocks "
          f"({100.0 * changed / max(allocated, 1):.2f} %)", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1] == "create":
        create(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "mixed":
        mixed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "change":
        change(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "plan":
        plan(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(__doc__)
