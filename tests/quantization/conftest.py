"""Trained tiny models and their INT8 bundles, built once per session (an INT8 export calibrates, lowers and
evaluates on the 359 held-out digits, 5-40 s each here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# Small enough to train in seconds, large enough to classify digits well (accuracy is what INT8 is judged on).
TRAINED: dict[str, dict[str, Any]] = {
    "cnn_small": {"widths": [8, 16]},
    "vit_digits": {"depth": 1, "dim": 32, "heads": 2},
}


class Int8Bundles:
    def __init__(self, root: Path):
        self.root = root
        self._weights: dict[str, Path] = {}
        self._done: dict[tuple, Any] = {}

    def weights(self, model: str) -> Path:
        if model not in self._weights:
            from edgekit.models import resolve_model
            from edgekit.training import save_weights, train_classifier

            spec = resolve_model(model, **TRAINED[model])
            result = train_classifier(spec, "digits", epochs=12)
            self._weights[model] = save_weights(
                self.root / f"{model}.pt", spec, {"dataset": "digits", "test_accuracy": result.test_accuracy}
            )
        return self._weights[model]

    def get(self, model: str, fmt: str, precision: str = "int8"):
        key = (model, fmt, precision)
        if key not in self._done:
            from edgekit.exporters.pipeline import export

            self._done[key] = export(
                model, format=fmt, precision=precision, weights=self.weights(model), calib_samples=32,
                out_dir=self.root / f"{model}-{fmt}-{precision}",
            )  # fmt: skip
        return self._done[key]


@pytest.fixture(scope="session")
def int8(tmp_path_factory) -> Int8Bundles:
    return Int8Bundles(tmp_path_factory.mktemp("int8"))
