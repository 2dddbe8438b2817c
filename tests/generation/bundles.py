"""A tiny encoder-decoder trained briefly on string reversal and its bundles in every format, built once per
session by the ``seq2seq`` fixture in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# seq2seq_tiny's own sizes (d_model 64, 2 + 1 layers, 4 query / 2 KV heads) with 16-token source and cache
CONFIG: dict[str, Any] = {"max_source": 16, "max_target": 16}
EPOCHS, PAIRS = 10, 4000


class Seq2SeqBundles:
    def __init__(self, root: Path):
        self.root = root
        self._weights: tuple[Path, float] | None = None
        self._done: dict[str, Any] = {}

    def weights(self) -> Path:
        return self._trained()[0]

    def exact_match(self) -> float:
        return self._trained()[1]

    def _trained(self) -> tuple[Path, float]:
        if self._weights is None:
            import torch

            from edgekit.generation.tasks import TASKS
            from edgekit.generation.train import train_seq2seq
            from edgekit.models import create_model
            from edgekit.training import save_weights

            torch.manual_seed(0)
            spec = create_model("seq2seq_tiny", **CONFIG)
            train, test = TASKS.get("reverse").split(PAIRS, 200)
            result = train_seq2seq(spec.module, train, test, epochs=EPOCHS)
            spec.module.eval()
            self._weights = (save_weights(self.root / "s2s.pt", spec, {"task": "reverse"}), result.exact_match)
        return self._weights

    def get(self, fmt: str):
        if fmt not in self._done:
            from edgekit.exporters.pipeline import export

            self._done[fmt] = export("seq2seq_tiny", format=fmt, weights=self.weights(), samples=4,
                                     out_dir=self.root / f"s2s-{fmt}")  # fmt: skip
        return self._done[fmt]

    def path(self, fmt: str) -> Path:
        return Path(self.get(fmt).bundle_dir)
