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
