"""The REST body of an inference: JSON tensors, and the binary tensor data extension.

With the extension (what tritonclient.http sends by default) a body is a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw bytes of every input whose parameters carry
``binary_data_size``, in the order of ``inputs``; an output is answered the same way when the request asks
(its ``binary_data`` parameter, or ``binary_data_output`` for all of them). Everything else is JSON ``data``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgekit.errors import InputError
from edgekit.serving.tensors import InferRequest, InferResponse, InputTensor, from_bytes, from_values

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class HttpInferRequest:
    request: InferRequest
    binary: Mapping[str, bool]  # output -> answered as raw bytes, where the request says so for that output
    binary_all: bool  # binary_data_output: the choice for every other output


def parse_infer(model: str, version: str, body: bytes, header_length: str | None) -> HttpInferRequest:
    header, blob = _split(body, header_length)
    try:
        doc = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the request body is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError('the request body must be a JSON object with "inputs"')
    raw_inputs = _field(doc, "inputs", list, "the request")
    inputs, offset = [], 0
    for i, item in enumerate(raw_inputs):
        tensor, used = _input(item, i, blob, offset)
        inputs.append(tensor)
        offset += used
    if offset != len(blob):
        raise InputError(f"the body carries {len(blob) - offset} bytes of binary data no input claims")
    binary, names = {}, []
    for i, item in enumerate(_field(doc, "outputs", list, "the request", [])):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InputError(f'outputs[{i}] must be an object with a "name"')
        names.append(item["name"])
        choice = _field(_parameters(item, f"output {item['name']!r}"), "binary_data", bool, "its parameters", None)
        if choice is not None:
            binary[item["name"]] = choice
    parameters = _parameters(doc, "the request")
    request_id = _field(doc, "id", str, "the request", "")
    request = InferRequest(model, version, request_id, tuple(inputs), tuple(names))
    binary_all = _field(parameters, "binary_data_output", bool, "the request's parameters", False)
    return HttpInferRequest(request, binary, binary_all)


def encode_infer(response: InferResponse, asked: HttpInferRequest) -> tuple[bytes, int | None]:
    """(the body, the JSON header's length when binary data follows it, else None)."""
    outputs, blobs = [], []
    for tensor in response.outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.array.shape)}
        if asked.binary.get(tensor.name, asked.binary_all) or tensor.datatype == "FP16":  # FP16 has no JSON form
            data = tensor.array.astype(tensor.array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            blobs.append(data)
        else:
            entry["data"] = tensor.array.reshape(-1).tolist()
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model, "model_version": response.version, "outputs": outputs}
    if response.id:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = dict(response.parameters)
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 <= n <= len(body):
        raise InputError(f"{HEADER_LENGTH} {header_length!r} is not a length within the body's {len(body)} bytes")
    return body[:n], body[n:]


def _input(item: Any, i: int, binary: bytes, offset: int) -> tuple[InputTensor, int]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InputError(f'inputs[{i}] must be an object with a "name"')
    name = item["name"]
    type_name = _field(item, "datatype", str, f"input {name!r}")
    shape = _field(item, "shape", list, f"input {name!r}")
    size = _field(_parameters(item, f"input {name!r}"), "binary_data_size", int, f"input {name!r}'s parameters", None)
    if size is None:
        if "data" not in item:
            raise InputError(f'input {name!r} has neither "data" nor a binary_data_size')
        return from_values(name, type_name, shape, item["data"]), 0
    if size < 0 or offset + size > len(binary):
        raise InputError(f"input {name!r}: binary_data_size {size} runs past the body's binary data "
                         f"({len(binary) - offset} bytes left)")  # fmt: skip
    return from_bytes(name, type_name, shape, binary[offset : offset + size]), size


def _parameters(item: dict, where: str) -> dict:
    return _field(item, "parameters", dict, where, {})


_MISSING = object()


def _field(item: dict, key: str, kind: type, where: str, default: Any = _MISSING) -> Any:
    value = item.get(key, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise InputError(f"{where} has no {key!r}")
        return default
    # bool is an int in Python: a size of `true` is refused, like a string
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(f"{where}: {key!r} must be a JSON {_JSON_NAMES[kind]}")
    return value


_JSON_NAMES = {list: "array", dict: "object", str: "string", int: "integer", bool: "boolean"}
