"""Per-operator time where the runtime exposes it: one table of op type -> time share, and placement.

- ONNX Runtime: its built-in profiler (a Chrome-trace JSON of every node run, with the provider).
- ExecuTorch: ETDump recorded by the runtime, read with ``executorch.devtools.Inspector``; XNNPACK
  reports each of its kernels, so delegated ops show up by kernel (``Convolution (NHWC, F32) IGEMM``).
- LiteRT: the Python interpreter API has no per-op timing; the table says so instead of guessing.

Each runtime records its own events (``Runtime.operator_times``); this module turns them into the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.bundle import Bundle
from edgekit.formats import get_format


@dataclass(frozen=True)
class OpStat:
    op: str
    placement: str  # where it ran: "xnnpack", "portable", "CPUExecutionProvider" ...
    calls: int
    total_ms: float
    share: float  # of the summed op time


def _stats(rows: dict[tuple[str, str], list[float]], runs: int) -> list[OpStat]:
    """Per op and placement: calls and milliseconds per run, from every recorded event (ms)."""
    total = sum(sum(v) for v in rows.values()) or 1.0
    out = [OpStat(op, where, round(len(v) / runs), sum(v) / runs, sum(v) / total) for (op, where), v in rows.items()]
    return sorted(out, key=lambda s: -s.total_ms)


def operator_profile(bundle: Bundle, inputs: dict[str, np.ndarray], runs: int = 20, threads: int | None = None):
    graph = bundle.graph()
    runtime = get_format(bundle.format).runtime_class()
    return _stats(runtime.operator_times(bundle.file(graph.file), graph, inputs, runs, threads), runs)
