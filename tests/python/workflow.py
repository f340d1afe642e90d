"""Oracle's changed-blocks workflow from Python, with a client generated from proto/
by grpcio-tools: proof that the contract works from another language.

    python3 workflow.py --server 127.0.0.1:PORT --proto DIR --work DIR

Registers a volume it writes itself, takes a full and an incremental backup,
creates a delta volume from them, attaches it and maps it over iSCSI with
qemu-img (libiscsi underneath), checks ListChangedBlocks, StreamChangedBlocks
and csi.v1 GetMetadataDelta agree with what it wrote, detaches and deletes.
Then lists the server's services and methods through gRPC reflection, as
`grpcurl list` / `grpcurl describe` would. Exits non-zero on any mismatch.
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import time

BLOCK = 4096
SIZE = 64 << 20


def generate(proto_dir, out_dir):
    """Runs grpc_tools.protoc on every .proto under proto_dir into out_dir."""
    from grpc_tools import protoc

    protos = []
    for root, _, files in os.walk(proto_dir):
        protos += [os.path.relpath(os.path.join(root, f), proto_dir) for f in files if f.endswith(".proto")]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
    if protoc.main(args + sorted(protos)) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out_dir)


def wait_backup(backups, pb, backup_id, limit=120):
    deadline = time.time() + limit
    while time.time() < deadline:
        b = backups.GetBackup(pb.GetBackupRequest(id=backup_id))
        if b.status != "creating":
            assert b.status == "available", b
            return b
        time.sleep(0.05)
    sys.exit(f"backup {backup_id} did not finish")


def write_blocks(path, blocks, seed):
    with open(path, "r+b") as f:
        for i, b in enumerate(blocks):
            f.seek(b * BLOCK)
            f.write(bytes([(seed + i) % 251 + 1]) * BLOCK)


def runs(blocks):
    """Sorted blocks as (byte offset, byte length) extents."""
    out = []
    for b in sorted(blocks):
        if out and out[-1][0] + out[-1][1] == b * BLOCK:
            out[-1] = (out[-1][0], out[-1][1] + BLOCK)
        else:
            out.append((b * BLOCK, BLOCK))
    return out


def qemu_map(url):
    out = subprocess.run(["qemu-img", "map", "--output=json", url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    extents = []
    for e in json.loads(out.stdout):
        if not e["data"]:
            continue
        if extents and extents[-1][0] + extents[-1][1] == e["start"]:
            extents[-1] = (extents[-1][0], extents[-1][1] + e["length"])
        else:
            extents.append((e["start"], e["length"]))
    return extents


def workflow(channel, work):
    import grpc

    volume_pb = importlib.import_module("blockdelta.v1.volume_pb2")
    volume_grpc = importlib.import_module("blockdelta.v1.volume_pb2_grpc")
    backup_pb = importlib.import_module("blockdelta.v1.backup_pb2")
    backup_grpc = importlib.import_module("blockdelta.v1.backup_pb2_grpc")
    csi_pb = importlib.import_module("csi.v1.snapshot_metadata_pb2")
    csi_grpc = importlib.import_module("csi.v1.snapshot_metadata_pb2_grpc")
    volumes = volume_grpc.VolumeServiceStub(channel)
    backups = backup_grpc.BackupServiceStub(channel)
    csi = csi_grpc.SnapshotMetadataStub(channel)

    path = os.path.join(work, "python-volume.img")
    with open(path, "wb") as f:
        f.truncate(SIZE)
    write_blocks(path, [0, 1, 2, 500, 9000, 16383], seed=1)
    vol = volumes.RegisterVolume(volume_pb.RegisterVolumeRequest(name="from-python", path=path))
    full = backups.CreateBackup(backup_pb.CreateBackupRequest(volume=vol.id))
    full = wait_backup(backups, backup_pb, full.id)
    changed = [1, 2, 3, 700, 701, 12000]
    write_blocks(path, changed, seed=77)
    inc = backups.CreateBackup(backup_pb.CreateBackupRequest(volume=vol.id, incremental=True))
    inc = wait_backup(backups, backup_pb, inc.id)
    assert inc.kind == "incremental" and inc.parent_id == full.id, inc
    expected = runs(changed)

    source = volume_pb.VolumeSourceDetails(
        type="volumeBackupDelta", first_backup_id=full.id, second_backup_id=inc.id, change_block_size_in_bytes=4096
    )
    delta = volumes.CreateVolume(volume_pb.CreateVolumeRequest(name="py-delta", source_details=source))
    assert delta.kind == "delta" and delta.status == "available", delta
    assert delta.changed_bytes == len(changed) * BLOCK, delta

    # Errors come back as gRPC status codes with messages.
    bad = volume_pb.VolumeSourceDetails(
        type="volumeBackupDelta", first_backup_id=full.id, second_backup_id=inc.id, change_block_size_in_bytes=3000
    )
    try:
        volumes.CreateVolume(volume_pb.CreateVolumeRequest(source_details=bad))
        sys.exit("a bad change block size was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        assert "power of two" in e.details(), e.details()

    att = volumes.AttachVolume(volume_pb.AttachVolumeRequest(volume=delta.id))
    url = f"iscsi://{att.portal}/{att.target_iqn}/{att.lun}"
    mapped = qemu_map(url)
    assert mapped == expected, (mapped, expected)

    page = backups.ListChangedBlocks(
        backup_pb.ListChangedBlocksRequest(first_backup_id=full.id, second_backup_id=inc.id, max_results=2)
    )
    listed = [(e.start * page.block_size, e.count * page.block_size) for e in page.extents]
    while page.next_page_token:
        page = backups.ListChangedBlocks(
            backup_pb.ListChangedBlocksRequest(
                first_backup_id=full.id, second_backup_id=inc.id, max_results=2, page_token=page.next_page_token
            )
        )
        listed += [(e.start * page.block_size, e.count * page.block_size) for e in page.extents]
    assert listed == expected, (listed, expected)
    streamed = []
    for page in backups.StreamChangedBlocks(
        backup_pb.ListChangedBlocksRequest(first_backup_id=full.id, second_backup_id=inc.id, max_results=1)
    ):
        streamed += [(e.start * page.block_size, e.count * page.block_size) for e in page.extents]
    assert streamed == expected, (streamed, expected)
    tuples = []
    for m in csi.GetMetadataDelta(
        csi_pb.GetMetadataDeltaRequest(base_snapshot_id=full.id, target_snapshot_id=inc.id, starting_offset=0)
    ):
        assert m.block_metadata_type == csi_pb.VARIABLE_LENGTH
        assert m.volume_capacity_bytes == SIZE
        tuples += [(t.byte_offset, t.size_bytes) for t in m.block_metadata]
    assert tuples == expected, (tuples, expected)
    try:
        list(csi.GetMetadataDelta(csi_pb.GetMetadataDeltaRequest(base_snapshot_id=full.id, target_snapshot_id="bkp-00000000000000ff")))
        sys.exit("an unknown snapshot was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e

    detached = volumes.DetachVolume(volume_pb.DetachVolumeRequest(volume=delta.id))
    assert detached.volume.status == "available", detached
    volumes.DeleteVolume(volume_pb.DeleteVolumeRequest(volume=delta.id))
    try:
        volumes.GetVolume(volume_pb.GetVolumeRequest(volume=delta.id))
        sys.exit("the deleted delta volume is still there")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e
    print(f"workflow: delta {full.id}..{inc.id}: {len(expected)} extents agree over iSCSI, listing, stream and CSI")


def reflection_listing(channel):
    """`grpcurl list` and `grpcurl describe SERVICE` through server reflection."""
    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    def ask(**kw):
        return next(iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**kw)]))))

    services = sorted(s.name for s in ask(list_services="").list_services_response.service)
    for s in services:
        print(s)
    for want in ("blockdelta.v1.BackupService", "blockdelta.v1.VolumeService", "csi.v1.SnapshotMetadata", "grpc.health.v1.Health"):
        assert want in services, (want, services)
    methods = []
    for service in ("blockdelta.v1.VolumeService", "csi.v1.SnapshotMetadata"):
        files = ask(file_containing_symbol=service).file_descriptor_response.file_descriptor_proto
        for raw in files:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            for s in fd.service:
                if f"{fd.package}.{s.name}" == service:
                    methods += [f"{service}.{m.name}" for m in s.method]
    for m in methods:
        print(m)
    for want in ("blockdelta.v1.VolumeService.CreateVolume", "blockdelta.v1.VolumeService.AttachVolume", "csi.v1.SnapshotMetadata.GetMetadataDelta"):
        assert want in methods, (want, methods)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--proto", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    out = os.path.join(a.work, "generated")
    os.makedirs(out, exist_ok=True)
    generate(a.proto, out)
    import grpc

    with grpc.insecure_channel(a.server) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        workflow(channel, a.work)
        reflection_listing(channel)
    print("python client: ok")


if __name__ == "__main__":
    main()
