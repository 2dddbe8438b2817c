"""Tiny LMUFormers trained briefly on digits (so that the spiking one fires) and their streaming bundles, built
once per session by the ``lmu`` fixture in tests/conftest.py: a streaming export lowers and then streams every
validation sequence frame by frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# 16 frames of 4 pixels (each digit row in two halves); small enough to train in seconds.
TRAINED: dict[str, Any] = {"dim": 16, "order": 8, "depth": 1, "mlp_ratio": 2}
EPOCHS = 4


class LmuBundles:
    def __init__(self, root: Path):
        self.root = root
        self._weights: dict[str, tuple[Path, float]] = {}
        self._done: dict[tuple, Any] = {}

    def weights(self, model: str) -> Path:
        return self._trained(model)[0]

    def accuracy(self, model: str) -> float:
        return self._trained(model)[1]

    def _trained(self, model: str) -> tuple[Path, float]:
        if model not in self._weights:
            from edgekit.models import resolve_model
            from edgekit.training import save_weights, train_classifier

            spec = resolve_model(model, **TRAINED)
            result = train_classifier(spec, "digits", epochs=EPOCHS)
            path = save_weights(self.root / f"{model}.pt", spec, {"dataset": "digits"})
            self._weights[model] = (path, result.test_accuracy)
        return self._weights[model]

    def get(self, model: str, fmt: str, streaming: bool = True, chunk: int = 1):
        key = (model, fmt, streaming, chunk)
        if key not in self._done:
            from edgekit.exporters.pipeline import export

            self._done[key] = export(
                model, format=fmt, weights=self.weights(model), streaming=streaming, chunk=chunk, samples=4,
                out_dir=self.root / f"{model}-{fmt}-{'stream' if streaming else 'whole'}-{chunk}",
            )  # fmt: skip
        return self._done[key]

    def path(self, model: str, fmt: str, **kwargs: Any) -> Path:
        return Path(self.get(model, fmt, **kwargs).bundle_dir)
