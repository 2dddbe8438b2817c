"""numpy arrays to and from the protobuf ``Tensor``, with every field checked (never a pickle).

A tensor from the network is accepted only with a known dtype, a non-negative shape and exactly
``prod(shape) * itemsize`` bytes of data; anything else is an ``InputError`` naming the field.
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

from edgekit.errors import InputError, MissingDependencyError

DTYPES = frozenset({"float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"})
MAX_RANK = 8


@functools.cache
def proto() -> tuple[ModuleType, ModuleType]:
    """(split_pb2, split_pb2_grpc), or a clear error naming the extra that brings gRPC."""
    try:
        import grpc  # noqa: F401

        from edgekit.splitter.proto import split_pb2, split_pb2_grpc
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "grpcio", "split", "split inference over gRPC") from None
    return split_pb2, split_pb2_grpc


def encode(name: str, array: np.ndarray):
    pb, _ = proto()
    array = np.ascontiguousarray(array)
    if array.dtype.name not in DTYPES:
        raise InputError(
            f"tensor {name}: dtype {array.dtype.name} cannot be sent (allowed: {', '.join(sorted(DTYPES))})"
        )
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return pb.Tensor(name=name, dtype=array.dtype.name, shape=list(array.shape), data=data)


def decode(tensor) -> np.ndarray:
    label = f"tensor {tensor.name or '(unnamed)'}"
    if tensor.dtype not in DTYPES:
        raise InputError(f"{label}: unknown dtype {tensor.dtype!r} (allowed: {', '.join(sorted(DTYPES))})")
    shape = tuple(int(d) for d in tensor.shape)
    if len(shape) > MAX_RANK or any(d < 0 for d in shape):
        raise InputError(f"{label}: invalid shape {list(shape)}")
    dtype = np.dtype(tensor.dtype).newbyteorder("<")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise InputError(
            f"{label}: {len(tensor.data)} bytes of data for shape {list(shape)} {tensor.dtype} ({expected} expected)"
        )
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
