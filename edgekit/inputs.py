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


def random_inputs(specs: Sequence[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    from edgekit.validate import make_inputs

    return make_inputs(specs, 1, seed)[0]
