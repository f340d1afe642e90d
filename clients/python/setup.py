"""Generates the gRPC stubs into the package at build time: blockdelta.v1 (from
proto/blockdelta/v1) and blockdelta.csi.v1 (from proto/csi/v1, CSI's package csi.v1 on the
wire). The protos are read from ../../proto, or from BLOCKDELTA_PROTO."""

import os
import shutil
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        from grpc_tools import protoc

        proto = os.environ.get("BLOCKDELTA_PROTO", os.path.join(HERE, "..", "..", "proto"))
        if not os.path.isdir(os.path.join(proto, "blockdelta", "v1")):
            sys.exit(f"blockdelta protos not found under {proto} (set BLOCKDELTA_PROTO)")
        with tempfile.TemporaryDirectory() as tree:
            # The CSI protos go under blockdelta/ so their modules are blockdelta.csi.v1.
            shutil.copytree(os.path.join(proto, "blockdelta"), os.path.join(tree, "blockdelta"))
            shutil.copytree(os.path.join(proto, "csi"), os.path.join(tree, "blockdelta", "csi"))
            files = []
            for root, _, names in os.walk(tree):
                files += [os.path.relpath(os.path.join(root, n), tree) for n in names if n.endswith(".proto")]
            include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
            out = self.build_lib
            args = ["protoc", f"-I{tree}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
            if protoc.main(args + sorted(files)) != 0:
                sys.exit("protoc failed")
        for pkg in ("v1", "csi", os.path.join("csi", "v1")):
            init = os.path.join(self.build_lib, "blockdelta", pkg, "__init__.py")
            open(init, "a").close()


setup(cmdclass={"build_py": BuildWithStubs})
