"""PyTorch eager as a runtime: the reference every export is compared with, and the latency baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekit.runtimes.base import Runtime
from edgekit.types import GraphSpec


class TorchRuntime(Runtime):
    name = "PyTorch eager"

    def __init__(self, module: torch.nn.Module, graph: GraphSpec, threads: int | None = None):
        self.module = module.eval()
        super().__init__(Path(f"<{type(module).__name__}>"), graph, threads)

    def _open(self, graph: GraphSpec | None) -> None:
        if self.threads:
            torch.set_num_threads(int(self.threads))

    def _run_native(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        from edgekit.models.spec import run_module

        outputs = run_module(self.module, tuple(torch.from_numpy(a) for a in arrays))
        return [o.detach().numpy() for o in outputs]
