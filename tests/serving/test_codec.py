"""The wire forms in isolation: tensors accepted only with exact counts, the binary extension's framing, and
the committed gRPC modules regenerated from inference.proto unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import InputError
from edgekit.serving.http_codec import encode_infer, parse_infer
from edgekit.serving.tensors import InferResponse, OutputTensor, from_bytes, from_values

ROOT = Path(__file__).resolve().parents[2]


def test_tensors_need_exact_counts_and_known_datatypes():
    assert from_bytes("x", "INT64", [2], np.array([3, -4], "<i8").tobytes()).array.tolist() == [3, -4]
    assert from_values("x", "BOOL", [1, 2], [[True, False]]).array.dtype == np.bool_
    with pytest.raises(InputError, match="7 bytes of data for shape \\[2\\] INT32 \\(8 expected\\)"):
        from_bytes("x", "INT32", [2], bytes(7))
    with pytest.raises(InputError, match="datatype 'BYTES' is not one this server takes"):
        from_bytes("x", "BYTES", [1], b"a")
    with pytest.raises(InputError, match="invalid shape"):
        from_bytes("x", "FP32", [-1], b"")
    with pytest.raises(InputError, match="out of range for INT8"):
        from_values("x", "INT8", [1], [300])
    with pytest.raises(InputError, match="INT32 data holds a float"):
        from_values("x", "INT32", [1], [1.5])
    with pytest.raises(InputError, match="ragged"):
        from_values("x", "FP32", [2, 2], [[1.0, 2.0], [3.0]])
    with pytest.raises(InputError, match="binary data only"):
        from_values("x", "FP16", [1], [1.0])


def test_binary_extension_framing_both_ways():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = json.dumps({"id": "r", "inputs": [
        {"name": "a", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}},
        {"name": "b", "datatype": "INT64", "shape": [1], "data": [9]},
    ], "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}]}).encode()  # fmt: skip
    asked = parse_infer("m", "", header + x.tobytes(), str(len(header)))
    (a, b), request = asked.request.inputs, asked.request
    assert request.id == "r" and request.outputs == ("y", "z")
    np.testing.assert_array_equal(a.array, x)
    assert b.array.tolist() == [9]
    with pytest.raises(InputError, match="4 bytes of binary data no input claims"):
        parse_infer("m", "", header + x.tobytes() + bytes(4), str(len(header)))

    response = InferResponse("m", "v", "r", (OutputTensor("y", "FP32", x), OutputTensor("z", "INT64", np.array([1]))))
    body, length = encode_infer(response, asked)
    doc = json.loads(body[:length])
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 24} and doc["outputs"][1]["data"] == [1]
    assert body[length:] == x.tobytes() and doc["id"] == "r"


def test_committed_grpc_modules_match_inference_proto(tmp_path):
    from grpc_tools import protoc  # the dev extra

    proto_dir = tmp_path / "edgekit" / "serving" / "proto"
    proto_dir.mkdir(parents=True)
    shutil.copy(ROOT / "edgekit/serving/proto/inference.proto", proto_dir)
    args = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}", str(proto_dir / "inference.proto")]  # fmt: skip
    assert protoc.main(args) == 0
    for name in ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py"):
        assert (proto_dir / name).read_text() == (ROOT / "edgekit/serving/proto" / name).read_text(), name
