"""Held-out accuracy of a model or of an exported bundle on a built-in dataset.

``evaluate_bundle`` needs only numpy and the bundle's runtime (plus scikit-learn for the data), so
a device can check that the bundle it received still classifies as it did on the workstation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle import read_bundle
from edgekit.data import load_dataset
from edgekit.errors import InputError


@dataclass(frozen=True)
class EvalResult:
    subject: str
    dataset: str
    accuracy: float
    samples: int
    runner: str


def evaluate_bundle(path: str | Path, dataset: str | None = None, threads: int | None = None) -> EvalResult:
    from edgekit.runtimes import load

    bundle = read_bundle(path)
    name = dataset or bundle.manifest["model"].get("dataset")
    if not name:
        raise InputError(f"{path}: the model was not built for a built-in dataset; name one with --data")
    with load(bundle, threads=threads) as runtime:
        spec = runtime.input_specs[0]
        split = load_dataset(name, spec.shape)
        batches, labels = split.test_batches(spec.shape[0])
        predictions = [next(iter(runtime.run({spec.name: x}).values())).reshape(len(x), -1).argmax(-1) for x in batches]
        correct = int((np.concatenate(predictions) == labels).sum())
        return EvalResult(str(path), name, correct / len(labels), len(labels), runtime.name)


def evaluate_model(
    model: str, dataset: str | None = None, weights: str | Path | None = None, config: dict[str, Any] | None = None
) -> EvalResult:
    from edgekit.exporters.pipeline import prepare_model
    from edgekit.training import evaluate_module

    spec = prepare_model(model, weights, **(config or {}))
    name = dataset or spec.dataset or "digits"
    split = load_dataset(name, tuple(spec.example_inputs[0].shape))
    accuracy = evaluate_module(spec, split)
    return EvalResult(spec.name, name, accuracy, len(split.x_test), "PyTorch eager")


__all__ = ["EvalResult", "evaluate_bundle", "evaluate_model"]
