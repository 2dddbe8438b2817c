"""The one driver that exports a model to several formats and times each: ``edgekit bench`` (export, verify,
profile with energy, one row per format) and the eager comparison (``compare.py``) both start here, share one
row type and render through one table (``report.format_table``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError
from edgekit.exporters.pipeline import try_export
from edgekit.exporters.result import ExportResult
from edgekit.profiling.profiler import profile


@dataclass(frozen=True)
class FormatRow:
    """One format's (or PyTorch eager's) export and timing; a field is None where that run did not measure it."""

    format: str  # the format's name, or "eager" for the PyTorch reference
    status: str  # ok / export failed / verification failed / profile failed
    size_bytes: int | None = None
    max_abs_err: float | None = None
    top1_agreement: float | None = None
    export_seconds: float | None = None
    undelegated_ops: int | None = None
    p50_ms: float | None = None  # eager comparison: the median over rounds of each round's median
    p90_ms: float | None = None
    ratio_to_eager: float | None = None
    joules_per_inference: float | None = None
    energy_source: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_formats(
    model: str,
    formats: list[str],
    out_root: str | Path,
    config: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    notify: Callable[[str], None] = lambda _m: None,
) -> tuple[list[FormatRow], dict[str, ExportResult]]:
    """Export and verify ``model`` once per format: a row per format, and the verified results by format."""
    rows, results = [], {}
    for fmt in formats:
        notify(f"{model}: exporting to {fmt}")
        result, status, detail = try_export(model, fmt, out_root, config=config, weights=weights, samples=4)
        if result is None:
            rows.append(FormatRow(fmt, status, detail=detail.splitlines()[0] if detail else ""))
            continue
        m, v = result.manifest, result.validation
        rows.append(FormatRow(fmt, "ok", m.total_bytes, v.max_abs_err, v.top1_agreement, m.export.seconds,
                              m.export.undelegated_op_count))  # fmt: skip
        results[fmt] = result
    return rows, results


def bench(
    model: str,
    formats: list[str],
    out_root: str | Path,
    config: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    runs: int = 50,
    energy: str = "auto",
    on_stage: Callable[[str], None] | None = None,
) -> list[FormatRow]:
    notify = on_stage or (lambda _m: None)
    rows, results = export_formats(model, formats, out_root, config, weights, notify)
    out = []
    for row in rows:
        if row.format not in results:
            out.append(row)
            continue
        notify(f"{model}: profiling {row.format}")
        try:
            report = profile(results[row.format].bundle_dir, runs=runs, energy=energy)
        except EdgekitError as exc:
            out.append(replace(row, status="profile failed", detail=str(exc)))
            continue
        g = report.graphs[0]
        out.append(replace(
            row, size_bytes=report.file_bytes, p50_ms=g.latency.median, p90_ms=g.latency.percentile(90),
            joules_per_inference=g.energy.joules_per_inference if g.energy else None,
            energy_source=_energy_source(g.energy),
        ))  # fmt: skip
    return out


def _energy_source(energy) -> str | None:
    if energy is None:
        return None
    return f"{energy.source} (below its noise floor)" if energy.below_noise_floor else energy.source
