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
    """Held-out accuracy of a bundle; a streaming bundle is fed each sequence frame by frame."""
    from edgekit.runtimes import load

    bundle = read_bundle(path)
    name = dataset or bundle.manifest.model.dataset
    if not name:
        raise InputError(f"{path}: the model was not built for a built-in dataset; name one with --data")
    if bundle.manifest.extras.stream is not None:
        steps, labels, runner = bundle_step_predictions(bundle, name, threads)
        accuracy = float(np.mean(steps[:, -1].argmax(-1) == labels))
        return EvalResult(str(path), name, accuracy, len(labels), f"{runner}, streamed")
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
    from edgekit.models import prepare_model
    from edgekit.training import evaluate_module

    spec = prepare_model(model, weights, **(config or {}))
    name = dataset or spec.dataset or "digits"
    split = load_dataset(name, tuple(spec.example_inputs[0].shape))
    accuracy = evaluate_module(spec, split)
    return EvalResult(spec.name, name, accuracy, len(split.x_test), "PyTorch eager")


# Reading the prediction after the first k% of the frames (LMUFormer's real-time mode).
REALTIME_FRACTIONS = (0.25, 0.3, 0.4, 0.5, 0.6, 0.68, 0.75, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class EarlyReading:
    fraction: float  # of the sequence seen
    frames: int
    accuracy: float


def realtime_accuracy(
    step_predictions: np.ndarray, labels: np.ndarray, fractions: tuple[float, ...] = REALTIME_FRACTIONS
) -> list[EarlyReading]:
    """Accuracy of the prediction read after ceil(k T) frames, from per-frame predictions (N, T, classes)."""
    frames_total = step_predictions.shape[1]
    readings = []
    for fraction in fractions:
        frames = max(1, min(frames_total, int(np.ceil(fraction * frames_total - 1e-9))))
        accuracy = float(np.mean(step_predictions[:, frames - 1].argmax(-1) == labels))
        readings.append(EarlyReading(fraction, frames, accuracy))
    return readings


def model_step_predictions(spec, split, batch_size: int = 256) -> np.ndarray:
    """(N, T, classes) per-frame predictions of a PyTorch model with ``forward_steps`` on the held-out split."""
    import torch

    spec.module.eval()
    with torch.no_grad():
        parts = [spec.module.forward_steps(torch.from_numpy(split.x_test[i : i + batch_size]))
                 for i in range(0, len(split.x_test), batch_size)]  # fmt: skip
    return torch.cat(parts).numpy()


def bundle_step_predictions(bundle, dataset: str, threads: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(N, T, classes) per-frame predictions of a streaming bundle on a dataset's held-out split, labels, runtime."""
    from edgekit.streaming import StreamSession

    with StreamSession(bundle, threads=threads) as session:
        layout = session.layout
        split = load_dataset(dataset, (1, layout.sequence_length, layout.features))
        steps = []
        for sequence in split.x_test:
            session.reset()
            steps.append(session.run(sequence))
        return np.stack(steps), split.y_test, session.runtime.name


__all__ = [
    "EarlyReading", "EvalResult", "REALTIME_FRACTIONS", "bundle_step_predictions", "evaluate_bundle", "evaluate_model",
    "model_step_predictions", "realtime_accuracy",
]  # fmt: skip
