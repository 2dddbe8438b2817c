from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import InputError
from edgekit.splitter.wire import decode, encode, proto


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "int8", "uint8", "bool"])
def test_round_trip(dtype):
    array = (np.random.default_rng(0).standard_normal((2, 3, 4)) * 10).astype(dtype)
    back = decode(encode("x", array))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_non_contiguous_and_big_endian_arrays_travel_as_their_values():
    array = np.arange(12, dtype=">f4").reshape(3, 4).T
    np.testing.assert_array_equal(decode(encode("x", array)), array.astype(np.float32))


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"dtype": "object", "shape": [1], "data": b"\0" * 8}, "unknown dtype 'object'"),
        ({"dtype": "float32", "shape": [2, 2], "data": b"\0" * 15}, "15 bytes of data for shape"),
        ({"dtype": "float32", "shape": [-1], "data": b""}, "invalid shape"),
        ({"dtype": "float32", "shape": [1] * 9, "data": b"\0" * 4}, "invalid shape"),
    ],
)
def test_malformed_tensors_are_refused(fields, match):
    pb, _ = proto()
    with pytest.raises(InputError, match=match):
        decode(pb.Tensor(name="x", **fields))


def test_unsendable_dtype():
    with pytest.raises(InputError, match="cannot be sent"):
        encode("x", np.array(["a"]))


def test_committed_grpc_modules_match_the_proto(tmp_path):
    """The generated modules are committed; regenerating them from split.proto changes nothing."""
    import shutil
    from pathlib import Path

    from grpc_tools import protoc  # the dev extra

    root = Path(__file__).resolve().parents[2]
    proto_dir = tmp_path / "edgekit" / "splitter" / "proto"
    proto_dir.mkdir(parents=True)
    shutil.copy(root / "edgekit/splitter/proto/split.proto", proto_dir)
    args = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}", str(proto_dir / "split.proto")]  # fmt: skip
    assert protoc.main(args) == 0
    for name in ("split_pb2.py", "split_pb2.pyi", "split_pb2_grpc.py"):
        assert (proto_dir / name).read_text() == (root / "edgekit/splitter/proto" / name).read_text(), name
