"""Read model inputs from ``.npy`` / ``.npz`` files without ever unpickling them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekit.errors import InputError
from edgekit.types import TensorSpec


def read_array_file(path: str | Path) -> dict[str, np.ndarray] | np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file {p} does not exist")
    with p.open("rb") as head:
        magic = head.read(6)
    if not (magic.startswith(b"\x93NUMPY") or magic.startswith(b"PK")):
        # np.load would take anything else for a pickle; say what the file is not
        raise InputError(f"{p} is not a readable .npy/.npz file (no numpy or zip header)")
    try:
        loaded = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(
                f"{p} holds pickled Python objects, which edgekit never loads; save plain arrays"
            ) from None
        raise InputError(f"{p} is not a readable .npy/.npz file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{p} is not a readable .npy/.npz file ({exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            return {k: loaded[k] for k in loaded.files}
    return loaded


def read_one_array(path: str | Path) -> np.ndarray:
    """The single array a .npy / .npz file holds (an .npz with several arrays is refused)."""
    array = read_array_file(path)
    if isinstance(array, dict):
        if len(array) != 1:
            raise InputError(f"{path}: expected one array, found {len(array)}")
        array = next(iter(array.values()))
    return np.asarray(array)


def inputs_from_files(specs: Sequence[TensorSpec], paths: Sequence[str]) -> dict[str, np.ndarray]:
    """Map files onto the graph's inputs: ``name=file.npy``, files in input order, or one ``.npz`` by name."""
    named: dict[str, np.ndarray] = {}
    positional: list[np.ndarray] = []
    for item in paths:
        name, sep, path = item.partition("=")
        if sep and name in {s.name for s in specs}:
            value = read_array_file(path)
            if isinstance(value, dict):
                raise InputError(f"{path}: give a .npy file for input {name!r}, not an .npz archive")
            named[name] = value
            continue
        value = read_array_file(item)
        if isinstance(value, dict):
            named.update(value)
        else:
            positional.append(value)
    free = [s.name for s in specs if s.name not in named]
    if len(positional) > len(free):
        raise InputError(f"{len(positional)} unnamed input file(s) but only {len(free)} input(s) left to fill: {free}")
    named.update(zip(free, positional, strict=False))
    return named


def make_inputs(specs: Sequence[TensorSpec], count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``count`` input sets drawn from N(0, 1) (floats) or small non-negative integers (int ids)."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(count):
        sample = {}
        for spec in specs:
            if np.issubdtype(spec.numpy_dtype, np.floating):
                sample[spec.name] = rng.standard_normal(spec.shape).astype(spec.numpy_dtype)
            elif spec.dtype == "bool":
                sample[spec.name] = rng.integers(0, 2, spec.shape).astype(bool)
            else:
                sample[spec.name] = rng.integers(0, 8, spec.shape).astype(spec.numpy_dtype)
        sets.append(sample)
    return sets


def random_inputs(specs: Sequence[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    return make_inputs(specs, 1, seed)[0]
