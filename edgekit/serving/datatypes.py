"""The protocol's tensor datatypes ("FP32", "INT64", ...) and the numpy dtypes edgekit's runtimes use.

One row per datatype: its numpy dtype and the typed-contents list that carries it in gRPC's
``InferTensorContents`` (FP16 has none: it travels as raw bytes only). BYTES (strings) is not served: no
edgekit graph takes or returns one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.errors import InputError


@dataclass(frozen=True)
class Datatype:
    name: str  # the protocol's name
    dtype: np.dtype
    contents_field: str | None  # the InferTensorContents list, None: raw bytes only

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize


DATATYPES: dict[str, Datatype] = {
    row.name: row
    for row in (
        Datatype("BOOL", np.dtype(np.bool_), "bool_contents"),
        Datatype("UINT8", np.dtype(np.uint8), "uint_contents"),
        Datatype("UINT16", np.dtype(np.uint16), "uint_contents"),
        Datatype("UINT32", np.dtype(np.uint32), "uint_contents"),
        Datatype("UINT64", np.dtype(np.uint64), "uint64_contents"),
        Datatype("INT8", np.dtype(np.int8), "int_contents"),
        Datatype("INT16", np.dtype(np.int16), "int_contents"),
        Datatype("INT32", np.dtype(np.int32), "int_contents"),
        Datatype("INT64", np.dtype(np.int64), "int64_contents"),
        Datatype("FP16", np.dtype(np.float16), None),
        Datatype("FP32", np.dtype(np.float32), "fp32_contents"),
        Datatype("FP64", np.dtype(np.float64), "fp64_contents"),
    )
}
_BY_NUMPY = {row.dtype: row for row in DATATYPES.values()}


def datatype(name: str, tensor: str) -> Datatype:
    """The row of a datatype named in a request; InputError for an unknown or unserved one."""
    row = DATATYPES.get(name)
    if row is None:
        raise InputError(f"input {tensor!r}: datatype {name!r} is not one this server takes "
                         f"({', '.join(DATATYPES)})")  # fmt: skip
    return row


def for_numpy(dtype: np.dtype | str) -> Datatype:
    """The protocol's datatype of a numpy dtype (a model's input or output)."""
    row = _BY_NUMPY.get(np.dtype(dtype))
    if row is None:
        raise InputError(f"numpy dtype {np.dtype(dtype).name} has no Open Inference Protocol datatype")
    return row
