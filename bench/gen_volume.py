#!/usr/bin/env python3
"""Seeded benchmark volumes for bench/backup_vs_restic.sh.

  gen_volume.py create PATH SIZE_BYTES ALLOCATED_BYTES SEED
      a sparse volume: regions of text-like, random and explicit-zero data
      scattered over SIZE, about ALLOCATED bytes in all, holes between.
  gen_volume.py change PATH FRACTION SEED
      rewrites about FRACTION of the volume's 4 KiB blocks in scattered
      places (single blocks and short runs), text-like or random.

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


if __name__ == "__main__":
    if sys.argv[1] == "create":
        create(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "change":
        change(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
