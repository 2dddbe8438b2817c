"""What crosses the serving boundary, whatever the transport: a request's tensors in, a response's out.

Both transports (``http_codec``, ``grpc_codec``) turn their wire form into an :class:`InferRequest` through
:func:`from_bytes` / :func:`from_values`, which accept a tensor only when its element or byte count is exactly
what its shape and datatype say; the service checks names, shapes and datatypes against the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.errors import InputError
from edgekit.serving.datatypes import datatype

MAX_RANK = 8
Parameter = bool | int | float | str


@dataclass(frozen=True)
class InputTensor:
    name: str
    datatype: str
    array: np.ndarray


@dataclass(frozen=True)
class InferRequest:
    model: str
    version: str = ""
    id: str = ""
    inputs: tuple[InputTensor, ...] = ()
    outputs: tuple[str, ...] = ()  # requested output names; empty: all of them


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    array: np.ndarray


@dataclass(frozen=True)
class InferResponse:
    model: str
    version: str
    id: str
    outputs: tuple[OutputTensor, ...]
    parameters: Mapping[str, Parameter] = field(default_factory=dict)  # e.g. a split answer that is degraded


def check_shape(name: str, shape: Sequence[Any]) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise InputError(f"input {name!r}: shape {list(shape)!r} is not a list of integers") from None
    if len(dims) > MAX_RANK or any(d < 0 for d in dims) or any(isinstance(d, bool) for d in shape):
        raise InputError(f"input {name!r}: invalid shape {list(dims)}")
    return dims


def from_bytes(name: str, type_name: str, shape: Sequence[Any], data: bytes) -> InputTensor:
    """A tensor from raw little-endian row-major bytes; their count must be exactly the shape's."""
    row = datatype(type_name, name)
    dims = check_shape(name, shape)
    expected = int(np.prod(dims, dtype=np.int64)) * row.itemsize
    if len(data) != expected:
        raise InputError(f"input {name!r}: {len(data)} bytes of data for shape {list(dims)} {type_name} "
                         f"({expected} expected)")  # fmt: skip
    array = np.frombuffer(data, dtype=row.dtype.newbyteorder("<")).reshape(dims)
    return InputTensor(name, row.name, array.astype(row.dtype, copy=False))


def from_values(name: str, type_name: str, shape: Sequence[Any], values: Any) -> InputTensor:
    """A tensor from a list of values (JSON ``data``, gRPC typed contents), flat or nested row-major."""
    row = datatype(type_name, name)
    dims = check_shape(name, shape)
    if row.contents_field is None:
        raise InputError(f"input {name!r}: {type_name} travels as binary data only")
    flat = _flatten(name, values)
    expected = int(np.prod(dims, dtype=np.int64))
    if len(flat) != expected:
        raise InputError(f"input {name!r}: {len(flat)} values for shape {list(dims)} ({expected} expected)")
    kind = bool if row.dtype.kind == "b" else float if row.dtype.kind == "f" else int
    if not all(type(v) is kind or (kind is float and type(v) is int) for v in flat):
        found = next(type(v).__name__ for v in flat if not (type(v) is kind or (kind is float and type(v) is int)))
        raise InputError(f"input {name!r}: {type_name} data holds a {found}")
    try:
        array = np.array(flat, dtype=row.dtype).reshape(dims)
    except OverflowError:
        raise InputError(f"input {name!r}: a value is out of range for {type_name}") from None
    return InputTensor(name, row.name, array)


def _flatten(name: str, values: Any) -> list:
    """Row-major values from a flat or evenly nested list (JSON allows both)."""
    if not isinstance(values, list):
        raise InputError(f"input {name!r}: data must be a list")
    flat = values
    while flat and isinstance(flat[0], list):
        if not all(isinstance(v, list) and len(v) == len(flat[0]) for v in flat):
            raise InputError(f"input {name!r}: data is a ragged list")
        flat = [x for v in flat for x in v]
    if any(isinstance(v, list) for v in flat):
        raise InputError(f"input {name!r}: data is a ragged list")
    return flat
