"""The package against a real server (tests/python_package.rs starts it and passes, in the
environment, the server, a member and a reader token of one project, two backups of it and
the extents the CLI listed between them)."""

import json
import os
import socket
import time
import unittest

import grpc

from blockdelta import Client, Extent, RetryPolicy
from blockdelta.csi.v1 import snapshot_metadata_pb2
from blockdelta.v1 import backup_pb2, volume_pb2

ENV = os.environ


def expected(name):
    return [Extent(o, n) for o, n in json.loads(ENV[name])]


class WorkflowTest(unittest.TestCase):
    def setUp(self):
        self.bd = Client(ENV["BLOCKDELTA_SERVER"], token=ENV["BD_MEMBER_TOKEN"], timeout=20)
        self.first, self.second = ENV["BD_FIRST"], ENV["BD_SECOND"]

    def tearDown(self):
        self.bd.close()

    def test_changed_blocks_across_pages_and_streams(self):
        want = expected("BD_CHANGED")
        self.assertTrue(want)
        self.assertEqual(list(self.bd.changed_blocks(self.first, self.second, page_size=1)), want)
        self.assertEqual(list(self.bd.changed_blocks(self.first, self.second, stream=True, page_size=2)), want)
        self.assertEqual(list(self.bd.allocated_blocks(self.second, page_size=1)), expected("BD_ALLOCATED"))

    def test_block_data_of_the_changed_extents(self):
        # tests/python_package.rs wrote 0x5a over every block the second backup changed.
        changed = list(self.bd.changed_blocks(self.first, self.second))
        for extent, data in self.bd.read_extents(self.second, changed):
            self.assertEqual(len(data), extent.length)
            self.assertEqual(data, b"\x5a" * extent.length)
        # The same bytes in one stream.
        streamed = list(self.bd.changed_block_data(self.first, self.second))
        self.assertEqual(sum(len(d) for _, d in streamed), sum(e.length for e in changed))
        self.assertTrue(all(d == b"\x5a" * len(d) for _, d in streamed))
        # An unaligned range across blocks, and one past the volume.
        raw = b"".join(c for _, c in self.bd.read_block_data(self.second, 4096 - 10, 20))
        self.assertEqual(raw, b"\x03" * 10 + b"\x5a" * 10)  # block 0 kept, block 1 changed
        with self.assertRaises(grpc.RpcError) as e:
            list(self.bd.read_block_data(self.second, 1 << 40, 1))
        self.assertEqual(e.exception.code(), grpc.StatusCode.OUT_OF_RANGE)

    def test_changed_block_data_is_exact_resumes_by_token_and_refuses_bad_input(self):
        def blocks(pieces):
            out = {}
            for offset, data in pieces:
                for i in range(0, len(data), 4096):
                    out[(offset + i) // 4096] = data[i:i + 4096]
            return out

        streamed = blocks(self.bd.changed_block_data(self.first, self.second))
        want = [b for e in expected("BD_CHANGED") for b in range(e.offset // 4096, (e.offset + e.length) // 4096)]
        self.assertEqual(sorted(streamed), want)
        # Each block is the second backup's, as GetBlockData reads it.
        for block, data in streamed.items():
            raw = b"".join(c for _, c in self.bd.read_block_data(self.second, block * 4096, 4096))
            self.assertEqual(data, raw)

        def call(**kw):
            req = backup_pb2.GetChangedBlockDataRequest(
                first_backup_id=self.first, second_backup_id=self.second, **kw)
            return list(self.bd.backups.GetChangedBlockData(req, timeout=20, metadata=self.bd._metadata))

        first = call(max_blocks=1)
        self.assertEqual(len(first), 1)
        self.assertTrue(first[0].next_page_token)
        rest = blocks(self.bd.changed_block_data(self.first, self.second, page_token=first[0].next_page_token))
        self.assertEqual({**blocks([(first[0].offset, first[0].data)]), **rest}, streamed)
        token = first[0].next_page_token
        tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
        for bad in [dict(page_token=tampered), dict(page_token="zz-not-a-token"),
                    dict(starting_block_index=1 << 40)]:
            with self.assertRaises(grpc.RpcError) as e:
                call(**bad)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, bad)
            self.assertTrue(e.exception.details(), bad)

    def test_delta_volume_attach_detach_delete(self):
        d = self.bd.create_delta_volume(self.first, self.second)
        self.assertEqual(d.changed_bytes, sum(e.length for e in expected("BD_CHANGED")))
        att = self.bd.attach(d.id, chap=True)
        self.assertTrue(att.portal and att.target_iqn.endswith(d.id) and len(att.chap_secret) >= 12)
        self.bd.detach(d.id)
        self.bd.delete_volume(d.id)
        with self.assertRaises(grpc.RpcError) as e:
            self.bd._call(self.bd.volumes.GetVolume, volume_pb2.GetVolumeRequest(volume=d.id))
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_errors_carry_the_servers_code_and_message(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.bd.create_delta_volume(self.first, self.second, change_block_size=3000)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("power of two", e.exception.details())

    def test_reader_token_reads_and_is_refused_the_rest(self):
        with Client(ENV["BLOCKDELTA_SERVER"], token=ENV["BD_READER_TOKEN"]) as r:
            self.assertEqual(r.whoami().role, "reader")
            self.assertEqual(list(r.changed_blocks(self.first, self.second)), expected("BD_CHANGED"))
            with self.assertRaises(grpc.RpcError) as e:
                r.create_delta_volume(self.first, self.second)
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

    def test_no_token_is_unauthenticated_and_not_retried(self):
        calls = []
        with Client(ENV["BLOCKDELTA_SERVER"], token="") as anon:
            method = anon.identity.WhoAmI

            def counted(*a, **kw):
                calls.append(1)
                return method(*a, **kw)

            anon.identity.WhoAmI = counted
            with self.assertRaises(grpc.RpcError) as e:
                anon.whoami()
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(len(calls), 1)

    def test_unavailable_is_retried_within_the_policy_then_raised(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        policy = RetryPolicy(attempts=3, initial=0.05, maximum=0.1, deadline=5)
        with Client(f"127.0.0.1:{port}", token="x", timeout=2, retry=policy) as gone:
            method = gone.identity.WhoAmI
            calls = []

            def counted(*a, **kw):
                calls.append(1)
                return method(*a, **kw)

            gone.identity.WhoAmI = counted
            started = time.monotonic()
            with self.assertRaises(grpc.RpcError) as e:
                gone.whoami()
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(len(calls), 3)
        self.assertLess(time.monotonic() - started, 10)

    def test_csi_stubs_are_importable_with_the_specs_field_numbers(self):
        f = snapshot_metadata_pb2.GetMetadataDeltaRequest.DESCRIPTOR.fields_by_name
        self.assertEqual((f["base_snapshot_id"].number, f["secrets"].number), (1, 5))


if __name__ == "__main__":
    unittest.main()
