"""Render comparison rows as a rich table (the library computes, callers decide where to print)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.table import Table

from edgekit.tables import WrappingTable

if TYPE_CHECKING:  # bench imports the exporters (torch); rendering must not
    from edgekit.profiling.bench import FormatRow


def _opt(fmt: str) -> Callable[[float | int | None], str]:
    return lambda v: "-" if v is None else format(v, fmt)


@dataclass(frozen=True)
class RowColumn:
    """One column of the format comparison: header, justification, and how a row fills it."""

    header: str
    justify: str
    cell: Callable[[FormatRow], str]


_COLUMNS: dict[str, RowColumn] = {
    c.header: c
    for c in (
        RowColumn("format", "left", lambda r: r.format),
        RowColumn("status", "left", lambda r: "ok" if r.status == "ok" else r.status),
        RowColumn("MiB", "right", lambda r: _opt(".2f")(None if r.size_bytes is None else r.size_bytes / 2**20)),
        RowColumn("max err", "right", lambda r: "-" if r.format == "eager" else _opt(".1e")(r.max_abs_err)),
        RowColumn("top-1", "right", lambda r: _opt(".0%")(r.top1_agreement)),
        RowColumn("p50 ms", "right", lambda r: _opt(".2f")(r.p50_ms)),
        RowColumn("p50 / p90 ms", "right", lambda r: _opt(".2f")(r.p50_ms) + " / " + _opt(".2f")(r.p90_ms)),
        RowColumn("vs eager", "right", lambda r: "-" if r.ratio_to_eager is None else f"{r.ratio_to_eager:.2f}x"),
        RowColumn("ops off delegate", "right", lambda r: _opt("d")(r.undelegated_ops)),
        RowColumn("export s", "right", lambda r: _opt(".1f")(r.export_seconds)),
        RowColumn("energy / inference", "right", lambda r: _energy(r)),
    )
}
# What each caller shows: the eager comparison (latency against PyTorch) and `edgekit bench` (energy).
COMPARE_COLUMNS = ("format", "status", "MiB", "max err", "p50 ms", "vs eager", "ops off delegate", "export s")
BENCH_COLUMNS = ("format", "status", "MiB", "max err", "top-1", "p50 / p90 ms", "energy / inference")


def _energy(r: FormatRow) -> str:
    return "-" if r.joules_per_inference is None else f"{_joules(r.joules_per_inference)} ({r.energy_source})"


def format_table(rows: Sequence[FormatRow], title: str, columns: Sequence[str] = COMPARE_COLUMNS) -> Table:
    table = WrappingTable(title=title)
    for name in columns:
        table.add_column(name, justify=_COLUMNS[name].justify)
    for r in rows:
        cells = [_COLUMNS[name].cell(r) for name in columns]
        if "status" in columns:
            k = columns.index("status")
            cells[k] = f"[green]{cells[k]}[/green]" if r.status == "ok" else f"[red]{cells[k]}[/red]"
        table.add_row(*cells)
    return table


def markdown_table(rows: Sequence[FormatRow], columns: Sequence[str] = COMPARE_COLUMNS[:6]) -> str:
    """The same rows as a Markdown table, for pasting into the README or an issue note."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_COLUMNS[name].cell(r) for name in columns) + " |" for r in rows]
    return "\n".join(lines)


def profile_table(report) -> Table:
    """The numbers of every graph of a ProfileReport, one column per graph."""
    table = WrappingTable(title=f"{report.bundle}: {report.model} ({report.format}, {report.runtime})")
    table.add_column("", style="bold")
    for g in report.graphs:
        table.add_column(g.graph, justify="right")
    rows: list[tuple[str, list[str]]] = []
    summaries = [g.summary() for g in report.graphs]
    rows.append(("cold load", [f"{s['load_ms']:.1f} ms" for s in summaries]))
    rows.append(("first inference", [f"{s['first_inference_ms']:.2f} ms" for s in summaries]))
    rows.append(("runs", [str(s["runs"]) for s in summaries]))
    for key, label in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("min_ms", "min"), ("max_ms", "max")):
        rows.append((label, [_ms(s[key]) for s in summaries]))
    rows.append(("mean ± stdev", [f"{_opt('.3f')(s['mean_ms'])} ± {_ms(s['stdev_ms'])}" for s in summaries]))
    rows.append(("throughput", [f"{_opt('.1f')(s['throughput_per_s'])} /s" for s in summaries]))
    rows.append(("peak RSS", [_mib(s["peak_rss_bytes"], ".0f") for s in summaries]))
    rows.append(("RSS added by loading", [_mib(s["model_memory_bytes"], ".1f") for s in summaries]))
    rows.append(("energy / inference", [_energy_cell(g.energy) for g in report.graphs]))
    rows.append(("average power", [f"{g.energy.average_watts:.2f} W" if g.energy and g.energy.average_watts else "-"
                                   for g in report.graphs]))  # fmt: skip
    rows.append(("energy source", [g.energy.source if g.energy else "none" for g in report.graphs]))
    for label, values in rows:
        table.add_row(label, *values)
    table.caption = (
        f"model files {report.file_bytes / 2**20:.2f} MiB, hashes verified in {report.verify_ms:.1f} ms, "
        f"runtime imported in {report.import_ms:.0f} ms (before the cold load)"
    )
    if report.timed_by:  # the device's own tool timed it: "-" is what it did not print
        table.caption = f'timed by {report.timed_by}; "-": not printed by the tool'
    return table


def _mib(value: int | None, fmt: str) -> str:
    return "-" if value is None else f"{value / 2**20:{fmt}} MiB"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def ops_table(stats, limit: int = 15) -> Table:
    table = WrappingTable(title="time by operator")
    for col in ("op", "ran on", "calls/run", "ms/run", "share"):
        table.add_column(col, justify="left" if col in ("op", "ran on") else "right")
    for s in stats[:limit]:
        table.add_row(s.op, s.placement, str(s.calls), f"{s.total_ms:.3f}", f"{s.share:.1%}")
    if len(stats) > limit:
        rest = stats[limit:]
        table.add_row(f"({len(rest)} more)", "", "", f"{sum(s.total_ms for s in rest):.3f}",
                      f"{sum(s.share for s in rest):.1%}")  # fmt: skip
    return table


def _joules(j: float | None) -> str:
    if j is None:
        return "-"
    return f"{j * 1e3:.3f} mJ" if j >= 1e-3 else f"{j * 1e6:.1f} µJ"


def _energy_cell(energy) -> str:
    if energy is None:
        return "-"
    if energy.below_noise_floor is not None:  # the numbers are in the energy line under the table
        return "[yellow]below noise floor[/yellow]"
    return _joules(energy.joules_per_inference)


def _plot_reported(hist, timeline, g) -> None:
    printed = [(f"p{q:g}", ms) for q, ms in g.latency.reported.percentiles]
    printed += [(k, v) for k, v in (("min", g.latency.min), ("mean", g.latency.mean), ("max", g.latency.max))
                if not math.isnan(v)]  # fmt: skip
    hist.barh([k for k, _ in printed], [v for _, v in printed], color="#4477aa")
    hist.set_xlabel("latency (ms)")
    hist.set_title(f"{g.graph}: as printed by {g.latency.reported.tool}")
    timeline.axis("off")
    timeline.text(0.0, 0.5, f"{g.latency.reported.tool} keeps no per-run times\n({g.latency.runs} runs)")


def write_csv(report, path) -> None:
    import csv

    rows = report.csv_rows()
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(report, path) -> None:
    """Latency histogram and timeline per graph, and the power trace where a meter sampled one."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from edgekit.errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "plot", "--plot") from None
    traced = [g for g in report.graphs if g.energy and g.energy.trace]
    rows = len(report.graphs) + (1 if traced else 0)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 3.2 * rows), squeeze=False)
    for i, g in enumerate(report.graphs):
        samples = g.latency.samples_ms
        hist, timeline = axes[i]
        if not samples:  # a device tool's summary: its printed statistics, no distribution to draw
            _plot_reported(hist, timeline, g)
            continue
        hist.hist(samples, bins=min(40, max(5, len(samples) // 3)), color="#4477aa")
        for q, style in ((50, "-"), (90, "--"), (99, ":")):
            hist.axvline(g.latency.percentile(q), color="black", linestyle=style, label=f"p{q}")
        hist.set_xlabel("latency (ms)")
        hist.set_title(f"{g.graph}: latency distribution")
        hist.legend()
        timeline.plot(range(len(samples)), samples, ".", markersize=3, color="#4477aa")
        timeline.set_xlabel("run")
        timeline.set_ylabel("ms")
        timeline.set_title(f"{g.graph}: latency over time")
    if traced:
        ax = axes[-1][0]
        for g in traced:
            t, w = zip(*g.energy.trace, strict=True)
            ax.plot(t, w, label=f"{g.graph} ({g.energy.source})")
            if g.energy.idle_watts is not None:
                ax.axhline(g.energy.idle_watts, color="grey", linestyle="--", label="idle baseline")
        ax.set_xlabel("s")
        ax.set_ylabel("W")
        ax.set_title("power")
        ax.legend()
        axes[-1][1].axis("off")
    fig.suptitle(f"{report.model} ({report.format}, {report.runtime})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def bench_table(rows: Sequence[FormatRow], title: str) -> Table:
    return format_table(rows, title, BENCH_COLUMNS)
