"""The helper layer: connect (TLS, token), delta volumes, changed blocks across pages and
streams, block data, with a timeout on every call and one bounded retry loop on UNAVAILABLE (no
nested retries: the channel's own retries are off, and each helper retries each call once
through `_call`)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, TypeVar

import grpc

try:  # optional: pieces are checked against their blake3 when it is installed
    import blake3
except ImportError:  # pragma: no cover
    blake3 = None

from .v1 import backup_pb2, backup_pb2_grpc, identity_pb2, identity_pb2_grpc, volume_pb2, volume_pb2_grpc

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How UNAVAILABLE (server restarting, connection reset) is retried: at most `attempts`
    tries, sleeping `initial` seconds, doubling up to `maximum`, never past `deadline`
    seconds in all."""

    attempts: int = 5
    initial: float = 0.2
    maximum: float = 5.0
    deadline: float = 60.0


@dataclass(frozen=True)
class Extent:
    """A run of changed (or allocated) bytes."""

    offset: int
    length: int


@dataclass(frozen=True)
class DeltaVolume:
    id: str
    name: str
    size: int
    changed_bytes: int
    first_backup_id: str
    second_backup_id: str


class Client:
    """A connection to a blockdelta server.

    `server`: ``host:port`` (plaintext), ``http://host:port`` or ``https://host:port``
    (TLS; `ca_cert` is the PEM CA that signed the server's certificate). `token` defaults
    to ``BLOCKDELTA_TOKEN``. `timeout` bounds every call, in seconds.
    """

    def __init__(
        self,
        server: str = "127.0.0.1:50051",
        token: Optional[str] = None,
        ca_cert: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
    ):
        self.timeout = timeout
        self.retry = retry
        token = token if token is not None else os.environ.get("BLOCKDELTA_TOKEN", "")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        # gRPC's own transparent retries would nest inside ours: off.
        options = [("grpc.enable_retries", 0)]
        target = server.split("://", 1)[-1]
        if server.startswith("https://"):
            read = lambda p: open(p, "rb").read() if p else None  # noqa: E731
            creds = grpc.ssl_channel_credentials(read(ca_cert), read(client_key), read(client_cert))
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self.volumes = volume_pb2_grpc.VolumeServiceStub(self._channel)
        self.backups = backup_pb2_grpc.BackupServiceStub(self._channel)
        self.identity = identity_pb2_grpc.IdentityServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: Callable[..., T], request) -> T:
        """One unary call with the timeout, retried on UNAVAILABLE per the policy."""
        once = lambda: iter([method(request, timeout=self.timeout, metadata=self._metadata)])  # noqa: E731
        return next(self._resumable(once))

    def whoami(self) -> identity_pb2.Identity:
        return self._call(self.identity.WhoAmI, identity_pb2.WhoAmIRequest())

    def create_volume(self, name: str, size: int) -> volume_pb2.Volume:
        return self._call(self.volumes.CreateVolume, volume_pb2.CreateVolumeRequest(name=name, size=size))

    def create_backup(self, volume: str, incremental: bool = False, wait: bool = True,
                      wait_timeout: float = 3600.0) -> backup_pb2.Backup:
        b = self._call(self.backups.CreateBackup, backup_pb2.CreateBackupRequest(volume=volume, incremental=incremental))
        return self.wait_backup(b.id, wait_timeout) if wait else b

    def wait_backup(self, backup_id: str, wait_timeout: float = 3600.0) -> backup_pb2.Backup:
        """Polls until the backup leaves `creating`; raises if it ends in `error`."""
        deadline = time.monotonic() + wait_timeout
        while True:
            b = self._call(self.backups.GetBackup, backup_pb2.GetBackupRequest(id=backup_id))
            if b.status == "available":
                return b
            if b.status != "creating":
                raise RuntimeError(f"backup {backup_id} is {b.status}: {b.error}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"backup {backup_id} still creating after {wait_timeout} s")
            time.sleep(0.2)

    def create_delta_volume(self, first_backup_id: str, second_backup_id: str,
                            change_block_size: int = 4096, name: str = "",
                            wait_timeout: float = 60.0) -> DeltaVolume:
        """Oracle's CreateVolume with `volumeBackupDelta` source details; waits until the
        volume is available (delta volumes are at once; the wait bounds a slow server)."""
        src = volume_pb2.VolumeSourceDetails(
            type="volumeBackupDelta", first_backup_id=first_backup_id,
            second_backup_id=second_backup_id, change_block_size_in_bytes=change_block_size)
        v = self._call(self.volumes.CreateVolume, volume_pb2.CreateVolumeRequest(name=name, source_details=src))
        deadline = time.monotonic() + wait_timeout
        while v.status != "available":
            if v.status == "error" or time.monotonic() > deadline:
                raise RuntimeError(f"delta volume {v.id} is {v.status}: {v.error}")
            time.sleep(0.1)
            v = self._call(self.volumes.GetVolume, volume_pb2.GetVolumeRequest(volume=v.id))
        return DeltaVolume(v.id, v.name, v.size, v.changed_bytes, first_backup_id, second_backup_id)

    def attach(self, volume: str, initiator: str = "", chap: bool = False,
               read_only: bool = False, block_size: int = 512) -> volume_pb2.Attachment:
        return self._call(self.volumes.AttachVolume, volume_pb2.AttachVolumeRequest(
            volume=volume, initiator=initiator, chap=chap, read_only=read_only, block_size=block_size))

    def detach(self, volume: str, force: bool = False) -> None:
        self._call(self.volumes.DetachVolume, volume_pb2.DetachVolumeRequest(volume=volume, force=force))

    def delete_volume(self, volume: str, force: bool = False) -> None:
        self._call(self.volumes.DeleteVolume, volume_pb2.DeleteVolumeRequest(volume=volume, force=force))

    def changed_blocks(self, first_backup_id: str, second_backup_id: str, block_size: int = 4096,
                       page_size: int = 1000, stream: bool = False) -> Iterator[Extent]:
        """The changed extents between two backups of a chain, in bytes, across every page
        (ListChangedBlocks) or over one server stream (StreamChangedBlocks). A stream
        broken by UNAVAILABLE is resumed from the last extent received, within the retry
        policy."""
        req = backup_pb2.ListChangedBlocksRequest(
            first_backup_id=first_backup_id, second_backup_id=second_backup_id,
            block_size=block_size, max_results=page_size)
        if stream:
            yield from self._streamed(req)
            return
        while True:
            page = self._call(self.backups.ListChangedBlocks, req)
            for e in page.extents:
                yield _extent(page, e)
            if not page.next_page_token:
                return
            req.page_token = page.next_page_token

    def _streamed(self, req) -> Iterator[Extent]:
        def stream():
            for page in self.backups.StreamChangedBlocks(req, timeout=self.timeout, metadata=self._metadata):
                for e in page.extents:
                    req.starting_block_index = e.start + e.count
                    yield _extent(page, e)

        yield from self._resumable(stream)

    def _resumable(self, stream: Callable[[], Iterator[T]]) -> Iterator[T]:
        """Yields what `stream()` yields; when UNAVAILABLE breaks it, calls `stream()` again
        (which asks from after the last item it delivered), within the retry policy."""
        started = time.monotonic()
        pause = self.retry.initial
        for attempt in range(1, self.retry.attempts + 1):
            try:
                yield from stream()
                return
            except grpc.RpcError as e:
                spent = time.monotonic() - started
                last = attempt == self.retry.attempts or spent + pause > self.retry.deadline
                if e.code() != grpc.StatusCode.UNAVAILABLE or last:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, self.retry.maximum)

    def read_block_data(self, backup_id: str, offset: int = 0, length: int = 0) -> Iterator[tuple]:
        """(offset, bytes) chunks of at most 1 MiB of the volume as of a backup, zeros where
        it was unallocated; `length` 0 reads to the end. Each chunk's blake3 is checked when
        the `blake3` module is installed. A stream broken by UNAVAILABLE resumes after the
        last chunk delivered, within the retry policy."""
        try:
            from blake3 import blake3 as _blake3
        except ImportError:
            _blake3 = None
        end = None if length == 0 else offset + length
        at = offset

        def stream():
            nonlocal at
            req = backup_pb2.GetBlockDataRequest(
                backup_id=backup_id, offset=at, length=0 if end is None else end - at)
            for m in self.backups.GetBlockData(req, timeout=self.timeout, metadata=self._metadata):
                if _blake3 is not None and _blake3(m.data).hexdigest() != m.blake3:
                    raise ValueError(f"block data at {m.offset} does not match its blake3")
                at = m.offset + len(m.data)
                yield m.offset, m.data

        yield from self._resumable(stream)

    def changed_block_data(self, first_backup_id: str, second_backup_id: str,
                           block_size: int = 4096, page_token: str = "") -> Iterator[tuple]:
        """(offset, bytes) of every changed extent between two backups, in one stream
        (GetChangedBlockData), pieces of at most 1 MiB, from `page_token` (a piece's
        `next_page_token`) on; resumed after the last piece on UNAVAILABLE, within the
        retry policy. Each piece's blake3 is checked when the `blake3` module is there."""
        token = page_token

        def stream():
            nonlocal token
            req = backup_pb2.GetChangedBlockDataRequest(
                first_backup_id=first_backup_id, second_backup_id=second_backup_id,
                block_size=block_size, page_token=token)
            for p in self.backups.GetChangedBlockData(req, timeout=self.timeout, metadata=self._metadata):
                if blake3 is not None and blake3.blake3(p.data).hexdigest() != p.blake3:
                    raise ValueError(f"piece at {p.offset}: blake3 mismatch")
                token = p.next_page_token
                yield p.offset, p.data
                if not token:
                    return

        yield from self._resumable(stream)

    def read_extents(self, backup_id: str, extents) -> Iterator[tuple]:
        """(Extent, bytes) for each extent (changed_blocks' output, say) as of the backup."""
        for e in extents:
            yield e, b"".join(chunk for _, chunk in self.read_block_data(backup_id, e.offset, e.length))

    def allocated_blocks(self, backup_id: str, block_size: int = 4096, page_size: int = 1000) -> Iterator[Extent]:
        """The extents a backup holds (not all zero), in bytes, across every page."""
        req = backup_pb2.ListAllocatedBlocksRequest(backup_id=backup_id, block_size=block_size, max_results=page_size)
        while True:
            page = self._call(self.backups.ListAllocatedBlocks, req)
            for e in page.extents:
                yield _extent(page, e)
            if not page.next_page_token:
                return
            req.page_token = page.next_page_token


def _extent(page, e) -> Extent:
    offset = e.start * page.block_size
    end = min((e.start + e.count) * page.block_size, page.volume_size)
    return Extent(offset, end - offset)
