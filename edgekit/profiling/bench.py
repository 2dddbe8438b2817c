"""``edgekit bench``: export a model to every format, verify, profile, and report one row per format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError
from edgekit.exporters.pipeline import try_export
from edgekit.profiling.profiler import profile


@dataclass(frozen=True)
class BenchRow:
    format: str
    status: str  # ok / export failed / verification failed / profile failed
    size_bytes: int | None = None
    max_abs_err: float | None = None
    top1_agreement: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    joules_per_inference: float | None = None
    energy_source: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def bench(
    model: str,
    formats: list[str],
    out_root: str | Path,
    config: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    runs: int = 50,
    energy: str = "auto",
    on_stage: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    notify = on_stage or (lambda _m: None)
    rows = []
    for fmt in formats:
        notify(f"{model}: exporting to {fmt}")
        result, status, detail = try_export(model, fmt, out_root, config=config, weights=weights, samples=4)
        if result is None:
            rows.append(BenchRow(fmt, status, detail=detail))
            continue
        notify(f"{model}: profiling {fmt}")
        try:
            report = profile(result.bundle_dir, runs=runs, energy=energy)
        except EdgekitError as exc:
            rows.append(BenchRow(fmt, "profile failed", detail=str(exc)))
            continue
        g = report.graphs[0]
        rows.append(BenchRow(
            fmt, "ok", report.file_bytes, result.validation.max_abs_err, result.validation.top1_agreement,
            g.latency.median, g.latency.percentile(90),
            g.energy.joules_per_inference if g.energy else None, _energy_source(g.energy),
        ))  # fmt: skip
    return rows


def _energy_source(energy) -> str | None:
    if energy is None:
        return None
    return f"{energy.source} (below its noise floor)" if energy.below_noise_floor else energy.source
