"""Calibration samples for static INT8: from the user's files, the model's own dataset, or (last) random.

A calibration source yields one input set per sample, shaped exactly like the model's inputs (batch
included), float32. Files are read without pickle. Whatever the source, the manifest records it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekit.errors import InputError
from edgekit.inputs import make_inputs, read_array_file
from edgekit.types import Calibration, TensorSpec

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 128


def load_calibration(
    specs: Sequence[TensorSpec],
    path: str | Path | None,
    dataset: str | None,
    limit: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> Calibration:
    """Calibration input sets: ``path`` if given, else ``dataset``'s training split, else random normal inputs."""
    if limit < 1:
        raise InputError(f"--calib-samples must be at least 1, got {limit}")
    if path is not None:
        return _from_path(specs, Path(path), limit)
    if dataset:
        return _from_dataset(specs, dataset, limit)
    log.warning("calibrating on random normal inputs: the model has no dataset; pass --calib with real inputs")
    return Calibration(tuple(make_inputs(specs, limit, seed=seed + 1)), "random normal inputs (no dataset, no --calib)")


def _from_dataset(specs: Sequence[TensorSpec], dataset: str, limit: int) -> Calibration:
    from edgekit.data import load_dataset

    if len(specs) != 1:
        raise InputError(f"the {dataset} dataset feeds one input; the model has {len(specs)} — pass --calib FILE.npz")
    spec = specs[0]
    split = load_dataset(dataset, spec.shape)
    stacked = _stack(spec, split.x_train[: limit * spec.shape[0]], f"dataset {dataset}")
    return Calibration(tuple({spec.name: s} for s in stacked[:limit]), f"{dataset} (training split)")


def _from_path(specs: Sequence[TensorSpec], path: Path, limit: int) -> Calibration:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz"))
        if not files:
            raise InputError(f"calibration folder {path} holds no .npy or .npz files")
        per_input: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
        for file in files:
            for name, arrays in _read(specs, file).items():
                per_input[name].extend(arrays)
    else:
        per_input = {name: list(a) for name, a in _read(specs, path).items()}
    counts = {name: len(arrays) for name, arrays in per_input.items()}
    if len(set(counts.values())) > 1:
        raise InputError(f"calibration data {path} has different sample counts per input: {counts}")
    n = min(next(iter(counts.values())), limit)
    if n == 0:
        raise InputError(f"calibration data {path} holds no samples")
    samples = tuple({name: per_input[name][i] for name in per_input} for i in range(n))
    return Calibration(samples, str(path))


def _read(specs: Sequence[TensorSpec], file: Path) -> dict[str, np.ndarray]:
    """Samples per input from one file: a .npy for a single-input model, an .npz keyed by input name
    (or holding ``x_train`` / a single array for a single-input model)."""
    loaded = read_array_file(file)
    if isinstance(loaded, dict):
        if all(s.name in loaded for s in specs):
            arrays = {s.name: loaded[s.name] for s in specs}
        elif len(specs) == 1 and ("x_train" in loaded or len(loaded) == 1):
            arrays = {specs[0].name: loaded["x_train"] if "x_train" in loaded else next(iter(loaded.values()))}
        else:
            names = ", ".join(s.name for s in specs)
            raise InputError(f"{file} has arrays {sorted(loaded)}; name them after the model's inputs ({names})")
    else:
        if len(specs) != 1:
            raise InputError(f"{file}: a .npy file calibrates a single-input model; pass an .npz keyed by input name")
        arrays = {specs[0].name: loaded}
    return {s.name: _stack(s, arrays[s.name], str(file)) for s in specs}


def _stack(spec: TensorSpec, array: np.ndarray, origin: str) -> np.ndarray:
    """(n, *spec.shape) from an array of samples with or without the batch dim, or a single input."""
    if array.size == 0:
        raise InputError(f"calibration data {origin} is empty")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise InputError(f"calibration data {origin} has dtype {array.dtype}; expected numbers")
    shape, sample = tuple(array.shape), spec.shape
    batch, per_item = sample[0], sample[1:]
    if shape == sample:
        stacked = array[None]
    elif shape[1:] == sample:
        stacked = array
    elif shape[1:] == per_item and shape[0] % batch == 0:
        stacked = array.reshape(-1, *sample)
    else:
        bare, batched = ", ".join(map(str, per_item)), ", ".join(map(str, sample))
        raise InputError(
            f"calibration data {origin} has shape {list(shape)}; input {spec.name!r} needs samples of shape "
            f"{list(sample)} (an array of shape [n, {bare}] or [n, {batched}])"
        )
    stacked = stacked.astype(spec.numpy_dtype, copy=False)
    if np.issubdtype(stacked.dtype, np.floating) and not np.isfinite(stacked).all():
        raise InputError(f"calibration data {origin} contains NaN or infinite values")
    return stacked
