"""Export one model to several formats and compare them with PyTorch eager in the same process.

Rounds interleave the runtimes (eager, pte, tflite, onnx, eager, ...) so that a noisy neighbour
on a shared machine slows every contender alike, with a pause before each so that one runtime's
spin-waiting threads do not tax the next; each row reports the median over rounds of the
per-round median, and the ratio to eager is taken per round before the median.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from edgekit.inputs import make_inputs
from edgekit.models import prepare_model
from edgekit.profiling.bench import FormatRow, export_formats
from edgekit.profiling.latency import measure
from edgekit.runtimes.torch import TorchRuntime
from edgekit.types import GraphSpec

log = logging.getLogger(__name__)


def compare_formats(
    model: str,
    formats: list[str],
    out_root: str | Path,
    config: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    rounds: int = 5,
    runs: int = 20,
    threads: int | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> list[FormatRow]:
    notify = on_stage or (lambda _m: None)
    spec = prepare_model(model, weights, **(config or {}))
    graph = GraphSpec("forward", "<eager>", spec.input_specs, spec.output_specs())
    contenders: dict[str, Any] = {"eager": TorchRuntime(spec.module, graph, threads=threads)}
    exported, results = export_formats(model, formats, out_root, config, weights, notify)
    rows = {r.format: r for r in exported}
    for fmt, result in results.items():
        contenders[fmt] = result.load(threads=threads)
    sample = make_inputs(spec.input_specs, 1, seed=3)[0]
    per_round: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(rounds):
        notify(f"{model}: timing round {r + 1}/{rounds}")
        for name, runtime in contenders.items():
            time.sleep(0.3)  # let the previous runtime's spinning worker threads (OpenMP, ORT) go idle first
            per_round[name].append(measure(lambda rt=runtime: rt.run(sample), runs=runs, warmup=3).median)
    eager = per_round["eager"]
    eager_row = FormatRow("eager", "ok", _param_bytes(spec.module), 0.0, p50_ms=statistics.median(eager))
    out = [replace(eager_row, ratio_to_eager=1.0)]
    for fmt in formats:
        row = rows[fmt]
        if fmt in per_round:
            ratios = [t / e for t, e in zip(per_round[fmt], eager, strict=False)]
            row = replace(row, p50_ms=statistics.median(per_round[fmt]), ratio_to_eager=statistics.median(ratios))
            contenders[fmt].close()
        out.append(row)
    return out


def _param_bytes(module: torch.nn.Module) -> int:
    return int(sum(t.numel() * t.element_size() for t in module.state_dict().values()))


__all__ = ["FormatRow", "compare_formats"]
