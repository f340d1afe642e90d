"""A typed client for blockdelta's gRPC API.

    from blockdelta import Client
    with Client("127.0.0.1:50051", token="bdt_…") as bd:
        for offset, length in bd.changed_blocks(first, second):
            ...

The generated stubs are importable too: ``blockdelta.v1.volume_pb2`` and friends, and CSI's
``blockdelta.csi.v1.snapshot_metadata_pb2``.
"""

from .client import Client, DeltaVolume, Extent, RetryPolicy

__all__ = ["Client", "DeltaVolume", "Extent", "RetryPolicy"]
