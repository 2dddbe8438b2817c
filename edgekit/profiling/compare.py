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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from edgekit import runtimes
from edgekit.exporters.pipeline import try_export
from edgekit.inputs import make_inputs
from edgekit.models import prepare_model
from edgekit.profiling.latency import measure
from edgekit.runtimes.torch import TorchRuntime
from edgekit.types import GraphSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FormatRow:
    label: str  # "eager" or the format name
    status: str  # ok / export failed / verification failed
    size_bytes: int | None
    max_abs_err: float | None
    median_ms: float | None
    ratio_to_eager: float | None
    export_seconds: float | None
    undelegated_ops: int | None
    detail: str = ""


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
    rows: dict[str, FormatRow] = {}
    for fmt in formats:
        notify(f"{model}: exporting to {fmt}")
        result, status, detail = try_export(model, fmt, out_root, weights=weights, config=config, samples=4)
        if result is None:
            rows[fmt] = FormatRow(fmt, status, None, None, None, None, None, None, detail.splitlines()[0])
            continue
        m = result.manifest
        rows[fmt] = FormatRow(
            fmt,
            "ok",
            m.total_bytes,
            result.validation.max_abs_err,
            None,
            None,
            m.export.seconds,
            m.export.undelegated_op_count,
        )
        contenders[fmt] = runtimes.load(result.bundle_dir, threads=threads)
    sample = make_inputs(spec.input_specs, 1, seed=3)[0]
    per_round: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(rounds):
        notify(f"{model}: timing round {r + 1}/{rounds}")
        for name, runtime in contenders.items():
            time.sleep(0.3)  # let the previous runtime's spinning worker threads (OpenMP, ORT) go idle first
            per_round[name].append(measure(lambda rt=runtime: rt.run(sample), runs=runs, warmup=3).median)
    eager = per_round["eager"]
    out = [FormatRow("eager", "ok", _param_bytes(spec.module), 0.0, statistics.median(eager), 1.0, None, None)]
    for fmt in formats:
        row = rows[fmt]
        if fmt in per_round:
            ratios = [t / e for t, e in zip(per_round[fmt], eager, strict=False)]
            row = replace(row, median_ms=statistics.median(per_round[fmt]), ratio_to_eager=statistics.median(ratios))
            contenders[fmt].close()
        out.append(row)
    return out


def _param_bytes(module: torch.nn.Module) -> int:
    return int(sum(t.numel() * t.element_size() for t in module.state_dict().values()))


__all__ = ["FormatRow", "compare_formats"]
