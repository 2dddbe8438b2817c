"""Every kind of bad request gets the protocol's error -- HTTP 4xx with {"error": ...}, a gRPC status code --
and the server goes on answering: each test ends with a good request on the same server."""

from __future__ import annotations

import http.client
import json

import grpc
import numpy as np
import pytest

from edgekit.serving.grpc_codec import proto
from tests.serving.conftest import MAX_REQUEST_MB

pytestmark = pytest.mark.workers
SHAPE = [1, 3, 32, 32]  # vit_tiny's image


def _post(server, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(server.host, server.http_port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _infer_json(server, doc: dict, model: str | None = None) -> tuple[int, dict]:
    status, _, body = _post(server, f"/v2/models/{model or server.model}/infer", json.dumps(doc).encode())
    return status, json.loads(body)


def _image(datatype="FP32", shape=SHAPE, data=None) -> dict:
    return {"name": "image", "datatype": datatype, "shape": shape,
            "data": data if data is not None else [0.5] * int(np.prod(shape))}  # fmt: skip


def _assert_still_serving_http(server):
    status, doc = _infer_json(server, {"inputs": [_image()]})
    assert status == 200, doc
    assert len(doc["outputs"][0]["data"]) == 10 and doc["outputs"][0]["datatype"] == "FP32"


@pytest.mark.parametrize(
    ("what", "doc", "model", "status", "fragment"),
    [
        ("unknown model", {"inputs": [_image()]}, "nope", 404, "unknown model 'nope'"),
        ("wrong shape", {"inputs": [_image(shape=[1, 3, 16, 16])]}, None, 400, "shape [1, 3, 16, 16]"),
        ("wrong dtype", {"inputs": [_image("INT64", data=[1] * 3072)]}, None, 400, "datatype INT64"),
        ("unknown dtype", {"inputs": [_image("FP8")]}, None, 400, "datatype 'FP8'"),
        ("too few values", {"inputs": [_image(data=[0.5] * 10)]}, None, 400, "10 values for shape"),
        ("unknown input", {"inputs": [_image(), {**_image(), "name": "extra"}]}, None, 400, "unknown input(s)"),
        ("no inputs", {"outputs": []}, None, 400, "has no 'inputs'"),
        ("unknown output", {"inputs": [_image()], "outputs": [{"name": "x"}]}, None, 400, "no output 'x'"),
        ("string data", {"inputs": [_image(data=["a"] * 3072)]}, None, 400, "holds a str"),
    ],
)
def test_a_bad_json_request_gets_its_error(bundle_server, what, doc, model, status, fragment):
    got, reply = _infer_json(bundle_server, doc, model)
    assert got == status, (what, reply)
    assert fragment in reply["error"], reply
    _assert_still_serving_http(bundle_server)


def test_malformed_json_binary_byte_count_and_oversize_bodies(bundle_server):
    path = f"/v2/models/{bundle_server.model}/infer"
    status, _, body = _post(bundle_server, path, b'{"inputs": [')
    assert status == 400 and "not JSON" in json.loads(body)["error"]

    # the binary tensor data extension with one byte short of the shape's 3072 floats
    header = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": SHAPE,
                                     "parameters": {"binary_data_size": 4 * 3072 - 1}}]}).encode()  # fmt: skip
    data = header + b"\0" * (4 * 3072 - 1)
    status, _, body = _post(bundle_server, path, data, {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and "12287 bytes of data for shape [1, 3, 32, 32] FP32 (12288 expected)" in body.decode()

    status, _, body = _post(bundle_server, path, data, {"Inference-Header-Content-Length": "999999"})
    assert status == 400 and "Inference-Header-Content-Length" in json.loads(body)["error"]

    status, _, body = _post(bundle_server, path, b"{" + b" " * (MAX_REQUEST_MB << 20) + b"}")
    assert status == 413 and "larger than this server's 1 MiB" in json.loads(body)["error"]
    _assert_still_serving_http(bundle_server)


def test_binary_outputs_come_back_as_the_extension_describes(bundle_server):
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    header = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": SHAPE,
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()  # fmt: skip
    status, headers, body = _post(bundle_server, f"/v2/models/{bundle_server.model}/infer", header + x.tobytes(),
                                  {"Inference-Header-Content-Length": str(len(header))})  # fmt: skip
    assert status == 200
    n = int(headers["Inference-Header-Content-Length"])
    doc = json.loads(body[:n])
    assert doc["outputs"][0]["parameters"]["binary_data_size"] == 40 and len(body) == n + 40
    logits = np.frombuffer(body[n:], "<f4")
    status, as_json = _infer_json(bundle_server, {"inputs": [_image(data=x.ravel().tolist())]})
    np.testing.assert_array_equal(logits, np.asarray(as_json["outputs"][0]["data"], np.float32))


@pytest.fixture(scope="module")
def stub(bundle_server):
    _, pb_grpc = proto()
    channel = grpc.insecure_channel(bundle_server.grpc_address)
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def _request(model="vit_tiny", datatype="FP32", shape=SHAPE, raw: bytes | None = None, typed=None):
    pb, _ = proto()
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="image", datatype=datatype, shape=shape)
    if typed is not None:
        tensor.contents.fp32_contents.extend(typed)
    else:
        request.raw_input_contents.append(raw if raw is not None else np.zeros(shape, np.float32).tobytes())
    return request


def _assert_still_serving_grpc(stub):
    reply = stub.ModelInfer(_request(), timeout=30)
    assert reply.outputs[0].name == "logits" and len(reply.raw_output_contents[0]) == 40


@pytest.mark.parametrize(
    ("what", "request_args", "code", "fragment"),
    [
        ("unknown model", {"model": "nope"}, grpc.StatusCode.NOT_FOUND, "unknown model 'nope'"),
        ("wrong shape", {"shape": [1, 3, 8, 8]}, grpc.StatusCode.INVALID_ARGUMENT, "shape [1, 3, 8, 8]"),
        (
            "wrong dtype",
            {"datatype": "INT32", "raw": bytes(4 * 3072)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "datatype INT32",
        ),  # fmt: skip
        ("byte count", {"raw": bytes(100)}, grpc.StatusCode.INVALID_ARGUMENT, "100 bytes of data"),
        ("typed count", {"typed": [0.0] * 7}, grpc.StatusCode.INVALID_ARGUMENT, "7 values for shape"),
        ("oversize", {"raw": bytes((MAX_REQUEST_MB << 20) + 1)}, grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ],
)
def test_a_bad_grpc_request_gets_its_status(stub, what, request_args, code, fragment):
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(_request(**request_args), timeout=30)
    assert caught.value.code() == code, (what, caught.value.details())
    assert fragment in caught.value.details()
    _assert_still_serving_grpc(stub)


def test_typed_contents_answer_as_raw_bytes_do(stub):
    x = np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32)
    raw = stub.ModelInfer(_request(raw=x.tobytes()), timeout=30)
    typed = stub.ModelInfer(_request(typed=x.ravel().tolist()), timeout=30)
    assert raw.raw_output_contents[0] == typed.raw_output_contents[0]
