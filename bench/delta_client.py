#!/usr/bin/env python3
"""Timing helpers for bench/delta_bench.sh, over a client generated from proto/.

  delta_client.py SERVER create FIRST SECOND CBS REPEAT
      creates (and deletes, untimed) a delta volume REPEAT times; prints
      "first_ms X median_ms Y changed_bytes Z" (the first call is the cold one).
  delta_client.py SERVER list FIRST SECOND OUT.json
      CreateVolume + every page of ListChangedBlocks, timed together (what a
      vendor needs to learn the delta); writes the byte extents to OUT.json;
      prints "seconds X extents N bytes B".
  delta_client.py - compare FILE1 FILE2
      the naive way: reads both restored volumes and lists differing 4 KiB
      blocks; prints "seconds X changed_blocks N".
  delta_client.py - sparse PATH SIZE EXTENTS.json
      a sparse file with data exactly at the extents (tgt's peer volume).
"""
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))


def stubs():
    from workflow import generate

    generate(os.path.join(ROOT, "proto"), tempfile.mkdtemp(prefix="bd-stubs-"))
    import grpc
    from blockdelta.v1 import backup_pb2, backup_pb2_grpc, volume_pb2, volume_pb2_grpc

    return grpc, volume_pb2, volume_pb2_grpc, backup_pb2, backup_pb2_grpc


def channel(server):
    """A channel whose calls carry BLOCKDELTA_TOKEN, as the CLI's do."""
    import grpc

    sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
    from workflow import authed

    raw = grpc.insecure_channel(server)
    return raw, authed(raw, os.environ["BLOCKDELTA_TOKEN"])


def create(server, first, second, cbs, repeat):
    grpc, vpb, vgrpc, _, _ = stubs()
    raw, ch = channel(server)
    with raw:
        volumes = vgrpc.VolumeServiceStub(ch)
        volumes.ListVolumes(vpb.ListVolumesRequest())  # connect outside the timing
        times = []
        for _ in range(repeat):
            src = vpb.VolumeSourceDetails(
                type="volumeBackupDelta", first_backup_id=first, second_backup_id=second,
                change_block_size_in_bytes=cbs)
            t0 = time.perf_counter()
            v = volumes.CreateVolume(vpb.CreateVolumeRequest(source_details=src))
            times.append((time.perf_counter() - t0) * 1000)
            volumes.DeleteVolume(vpb.DeleteVolumeRequest(volume=v.id))
        print(f"first_ms {times[0]:.2f} median_ms {statistics.median(times):.2f} changed_bytes {v.changed_bytes}")


def listing(server, first, second, out):
    grpc, vpb, vgrpc, bpb, bgrpc = stubs()
    raw, ch = channel(server)
    with raw:
        volumes, backups = vgrpc.VolumeServiceStub(ch), bgrpc.BackupServiceStub(ch)
        volumes.ListVolumes(vpb.ListVolumesRequest())
        t0 = time.perf_counter()
        src = vpb.VolumeSourceDetails(type="volumeBackupDelta", first_backup_id=first, second_backup_id=second)
        v = volumes.CreateVolume(vpb.CreateVolumeRequest(source_details=src))
        extents, token = [], ""
        while True:
            page = backups.ListChangedBlocks(bpb.ListChangedBlocksRequest(
                first_backup_id=first, second_backup_id=second, page_token=token))
            extents += [[e.start * page.block_size, e.count * page.block_size] for e in page.extents]
            token = page.next_page_token
            if not token:
                break
        seconds = time.perf_counter() - t0
        volumes.DeleteVolume(vpb.DeleteVolumeRequest(volume=v.id))
    with open(out, "w") as f:
        json.dump(extents, f)
    print(f"seconds {seconds:.3f} extents {len(extents)} bytes {sum(e[1] for e in extents)}")


def compare(a, b):
    t0 = time.perf_counter()
    changed = 0
    chunk = 1 << 20
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if not x and not y:
                break
            if x != y:
                for i in range(0, max(len(x), len(y)), 4096):
                    if x[i:i + 4096] != y[i:i + 4096]:
                        changed += 1
    print(f"seconds {time.perf_counter() - t0:.3f} changed_blocks {changed}")


def sparse(path, size, extents_file):
    with open(extents_file) as f:
        extents = json.load(f)
    with open(path, "wb") as f:
        f.truncate(int(size))
        for off, length in extents:
            f.seek(off)
            f.write(b"\xab" * length)


if __name__ == "__main__":
    server, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if cmd == "create":
        create(server, args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "list":
        listing(server, *args)
    elif cmd == "compare":
        compare(*args)
    elif cmd == "sparse":
        sparse(*args)
    else:
        sys.exit(__doc__)
