"""gRPC messages of the protocol to and from the service's request and response.

An input's data comes either from ``raw_input_contents`` (one entry per input, in order; what tritonclient
sends) or from its typed ``contents`` -- never both. Outputs go back as ``raw_output_contents``.
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

from edgekit.errors import InputError, MissingDependencyError
from edgekit.serving.backend import ModelMetadata
from edgekit.serving.datatypes import datatype, for_numpy
from edgekit.serving.tensors import InferRequest, InferResponse, from_bytes, from_values


@functools.cache
def proto() -> tuple[ModuleType, ModuleType]:
    """(inference_pb2, inference_pb2_grpc), or a clear error naming the extra that brings gRPC."""
    try:
        import grpc  # noqa: F401

        from edgekit.serving.proto import inference_pb2, inference_pb2_grpc
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "grpcio", "serve", "serving over gRPC") from None
    return inference_pb2, inference_pb2_grpc


def parse_infer(message) -> InferRequest:
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise InputError(f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs")
    inputs = []
    for i, tensor in enumerate(message.inputs):
        typed = tensor.HasField("contents")
        if raw:
            if typed:
                raise InputError(f"input {tensor.name!r}: typed contents and raw_input_contents together")
            inputs.append(from_bytes(tensor.name, tensor.datatype, tensor.shape, raw[i]))
            continue
        row = datatype(tensor.datatype, tensor.name)
        if row.contents_field is None:
            raise InputError(f"input {tensor.name!r}: {row.name} travels in raw_input_contents only")
        values = list(getattr(tensor.contents, row.contents_field))
        if row.dtype.kind == "f":
            values = [float(v) for v in values]
        inputs.append(from_values(tensor.name, tensor.datatype, tensor.shape, values))
    outputs = tuple(o.name for o in message.outputs)
    return InferRequest(message.model_name, message.model_version, message.id, tuple(inputs), outputs)


def encode_infer(response: InferResponse):
    pb, _ = proto()
    reply = pb.ModelInferResponse(model_name=response.model, model_version=response.version, id=response.id)
    for name, value in response.parameters.items():
        _set_parameter(reply.parameters[name], value)
    for tensor in response.outputs:
        reply.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.array.shape))
        array = np.ascontiguousarray(tensor.array)
        reply.raw_output_contents.append(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return reply


def encode_metadata(meta: ModelMetadata):
    pb, _ = proto()
    reply = pb.ModelMetadataResponse(name=meta.name, versions=[meta.version], platform=meta.platform)
    for specs, into in ((meta.inputs, reply.inputs), (meta.outputs, reply.outputs)):
        for spec in specs:
            into.add(name=spec.name, datatype=for_numpy(spec.dtype).name, shape=list(spec.shape))
    return reply


def _set_parameter(parameter, value) -> None:
    field = {bool: "bool_param", int: "int64_param", float: "double_param", str: "string_param"}[type(value)]
    setattr(parameter, field, value)
