"""Oracle's changed-blocks workflow from Python, with a client generated from proto/
by grpcio-tools: proof that the contract works from another language.

    python3 workflow.py --server 127.0.0.1:PORT --proto DIR --work DIR \
        --token MEMBER_TOKEN [--reader-token READER_TOKEN]

As a project member: creates a managed volume and writes it over iSCSI with
qemu-io (attach, write, detach), takes a full and an incremental backup,
creates a delta volume from them, attaches it and maps it over iSCSI with
qemu-img (libiscsi underneath), checks ListChangedBlocks, StreamChangedBlocks
and csi.v1 GetMetadataDelta agree with what it wrote, detaches and deletes.
Then lists the server's services and methods through gRPC reflection, as
`grpcurl list` / `grpcurl describe` would. With a reader token of the same
project: lists work, every mutating call fails cleanly with PERMISSION_DENIED.
Exits non-zero on any mismatch.
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


def write_blocks(volumes, pb, volume_id, blocks, seed):
    """Writes the blocks as a host would: attach, qemu-io over iscsi://, detach."""
    att = volumes.AttachVolume(pb.AttachVolumeRequest(volume=volume_id))
    url = f"iscsi://{att.portal}/{att.target_iqn}/{att.lun}"
    cmd = ["qemu-io", "-f", "raw"]
    for i, b in enumerate(blocks):
        cmd += ["-c", f"write -P {(seed + i) % 251 + 1} {b * BLOCK} {BLOCK}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "error" not in out.stdout.lower(), (out.stdout, out.stderr)
    volumes.DetachVolume(pb.DetachVolumeRequest(volume=volume_id))


class Bearer:
    """Adds `authorization: Bearer TOKEN` to every call (unary and server-streaming)."""

    def __init__(self, token):
        self.metadata = (("authorization", f"Bearer {token}"),)

    def _with(self, details):
        import grpc

        class Details(grpc.ClientCallDetails):
            pass

        d = Details()
        d.method, d.timeout, d.credentials = details.method, details.timeout, details.credentials
        d.wait_for_ready, d.compression = details.wait_for_ready, details.compression
        d.metadata = list(details.metadata or []) + list(self.metadata)
        return d

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with(details), request)


def authed(channel, token):
    import grpc

    class Interceptor(Bearer, grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
        pass

    return grpc.intercept_channel(channel, Interceptor(token))


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

    vol = volumes.CreateVolume(volume_pb.CreateVolumeRequest(name="from-python", size=SIZE))
    write_blocks(volumes, volume_pb, vol.id, [0, 1, 2, 500, 9000, 16383], seed=1)
    full = backups.CreateBackup(backup_pb.CreateBackupRequest(volume=vol.id))
    full = wait_backup(backups, backup_pb, full.id)
    changed = [1, 2, 3, 700, 701, 12000]
    write_blocks(volumes, volume_pb, vol.id, changed, seed=77)
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


def reader_is_refused(channel):
    """A reader token lists and reads; every mutating call is PERMISSION_DENIED."""
    import grpc

    volume_pb = importlib.import_module("blockdelta.v1.volume_pb2")
    volume_grpc = importlib.import_module("blockdelta.v1.volume_pb2_grpc")
    backup_pb = importlib.import_module("blockdelta.v1.backup_pb2")
    backup_grpc = importlib.import_module("blockdelta.v1.backup_pb2_grpc")
    volumes = volume_grpc.VolumeServiceStub(channel)
    backups = backup_grpc.BackupServiceStub(channel)
    listed = volumes.ListVolumes(volume_pb.ListVolumesRequest())
    names = [v.name for v in listed.volumes]
    assert "from-python" in names, names
    vol = next(v for v in listed.volumes if v.name == "from-python")
    refused = 0
    for call, request in [
        (volumes.CreateVolume, volume_pb.CreateVolumeRequest(name="reader-made", size=SIZE)),
        (volumes.DeleteVolume, volume_pb.DeleteVolumeRequest(volume=vol.id)),
        (volumes.AttachVolume, volume_pb.AttachVolumeRequest(volume=vol.id)),
        (backups.CreateBackup, backup_pb.CreateBackupRequest(volume=vol.id)),
    ]:
        try:
            call(request)
            sys.exit(f"a reader token was allowed {call}")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED, (e.code(), e.details())
            assert "reader" in e.details(), e.details()
            refused += 1
    after = volumes.ListVolumes(volume_pb.ListVolumesRequest())
    assert sorted(v.id for v in after.volumes) == sorted(v.id for v in listed.volumes)
    print(f"reader: {len(names)} volumes listed, {refused} mutating calls refused with PERMISSION_DENIED")


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
    p.add_argument("--token", required=True, help="a member (or admin) token")
    p.add_argument("--reader-token", help="a reader token of the same project")
    a = p.parse_args()
    out = os.path.join(a.work, "generated")
    os.makedirs(out, exist_ok=True)
    generate(a.proto, out)
    import grpc

    with grpc.insecure_channel(a.server) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        # Without a token every call but health and reflection is refused.
        try:
            importlib.import_module("blockdelta.v1.volume_pb2_grpc").VolumeServiceStub(channel).ListVolumes(
                importlib.import_module("blockdelta.v1.volume_pb2").ListVolumesRequest()
            )
            sys.exit("a call without a token was answered")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
        workflow(authed(channel, a.token), a.work)
        if a.reader_token:
            reader_is_refused(authed(channel, a.reader_token))
        reflection_listing(channel)
    print("python client: ok")


if __name__ == "__main__":
    main()
