"""The Kubernetes external-snapshot-metadata sidecar's calls, in its order, over the plugin's
unix socket, with stubs generated from proto/csi/v1 (CSI's field numbers):

    python3 csi_sidecar.py --socket PATH --proto DIR --work DIR --token T --base B --target T

1. csi.v1.Identity/GetPluginInfo, GetPluginCapabilities (SNAPSHOT_METADATA_SERVICE must be
   offered), Probe (ready);
2. csi.v1.SnapshotMetadata/GetMetadataAllocated(target) and GetMetadataDelta(base, target),
   the token in `secrets` as the sidecar passes the snapshotter secret; a call without it is
   refused UNAUTHENTICATED.

Prints one JSON line: {"plugin", "allocated": [[offset, length]…], "delta": [[offset, length]…]}.
"""

import argparse
import importlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workflow import generate  # noqa: E402


def extents(stream):
    out = []
    for m in stream:
        for t in m.block_metadata:
            if out and out[-1][0] + out[-1][1] == t.byte_offset:
                out[-1][1] += t.size_bytes
            else:
                out.append([t.byte_offset, t.size_bytes])
    return out


def main():
    p = argparse.ArgumentParser()
    for a in ("--socket", "--proto", "--work", "--token", "--base", "--target"):
        p.add_argument(a, required=True)
    a = p.parse_args()
    out = os.path.join(a.work, "csi-generated")
    os.makedirs(out, exist_ok=True)
    generate(a.proto, out)
    import grpc

    ident_pb = importlib.import_module("csi.v1.identity_pb2")
    ident_grpc = importlib.import_module("csi.v1.identity_pb2_grpc")
    meta_pb = importlib.import_module("csi.v1.snapshot_metadata_pb2")
    meta_grpc = importlib.import_module("csi.v1.snapshot_metadata_pb2_grpc")
    # grpc-go (the sidecar) sends `localhost` as the authority on a unix socket; Python's
    # default is the socket's path, which is not a valid HTTP/2 authority.
    with grpc.insecure_channel(f"unix://{a.socket}", options=[("grpc.default_authority", "localhost")]) as ch:
        grpc.channel_ready_future(ch).result(timeout=30)
        identity = ident_grpc.IdentityStub(ch)
        info = identity.GetPluginInfo(ident_pb.GetPluginInfoRequest(), timeout=10)
        assert info.name and info.vendor_version, info
        caps = identity.GetPluginCapabilities(ident_pb.GetPluginCapabilitiesRequest(), timeout=10)
        offered = [c.service.type for c in caps.capabilities if c.HasField("service")]
        assert ident_pb.PluginCapability.Service.SNAPSHOT_METADATA_SERVICE in offered, caps
        probe = identity.Probe(ident_pb.ProbeRequest(), timeout=10)
        assert probe.HasField("ready") and probe.ready.value, probe
        meta = meta_grpc.SnapshotMetadataStub(ch)
        secrets = {"token": a.token}
        try:
            list(meta.GetMetadataAllocated(meta_pb.GetMetadataAllocatedRequest(snapshot_id=a.target), timeout=30))
            sys.exit("a call without the token in secrets was answered")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
        allocated = extents(meta.GetMetadataAllocated(
            meta_pb.GetMetadataAllocatedRequest(snapshot_id=a.target, secrets=secrets), timeout=60))
        delta = extents(meta.GetMetadataDelta(
            meta_pb.GetMetadataDeltaRequest(base_snapshot_id=a.base, target_snapshot_id=a.target,
                                            max_results=2, secrets=secrets), timeout=60))
    print(json.dumps({"plugin": info.name, "allocated": allocated, "delta": delta}))


if __name__ == "__main__":
    main()
