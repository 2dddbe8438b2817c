"""Render comparison rows as a rich table (the library computes, callers decide where to print)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:  # compare imports torch; rendering must not
    from edgekit.profiling.compare import FormatRow


def format_table(rows: Sequence[FormatRow], title: str) -> Table:
    table = Table(title=title)
    for col, justify in (
        ("format", "left"),
        ("status", "left"),
        ("MiB", "right"),
        ("max err", "right"),
        ("p50 ms", "right"),
        ("vs eager", "right"),
        ("off-delegate ops", "right"),
        ("export s", "right"),
    ):
        table.add_column(col, justify=justify)
    for r in rows:
        status = "[green]ok[/green]" if r.status == "ok" else f"[red]{r.status}[/red]"
        table.add_row(
            r.label,
            status,
            "-" if r.size_bytes is None else f"{r.size_bytes / 2**20:.2f}",
            "-" if r.max_abs_err is None or r.label == "eager" else f"{r.max_abs_err:.1e}",
            "-" if r.median_ms is None else f"{r.median_ms:.2f}",
            "-" if r.ratio_to_eager is None else f"{r.ratio_to_eager:.2f}x",
            "-" if r.undelegated_ops is None else str(r.undelegated_ops),
            "-" if r.export_seconds is None else f"{r.export_seconds:.1f}",
        )
    return table


def markdown_table(rows: Sequence[FormatRow]) -> str:
    """The same rows as a Markdown table, for pasting into the README or an issue note."""
    lines = ["| format | status | size MiB | max abs err | median ms | vs eager |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.label} | {r.status} | {'-' if r.size_bytes is None else f'{r.size_bytes / 2**20:.2f}'} | "
            f"{'-' if r.max_abs_err is None or r.label == 'eager' else f'{r.max_abs_err:.1e}'} | "
            f"{'-' if r.median_ms is None else f'{r.median_ms:.2f}'} | "
            f"{'-' if r.ratio_to_eager is None else f'{r.ratio_to_eager:.2f}x'} |"
        )
    return "\n".join(lines)


def profile_table(report) -> Table:
    """The numbers of every graph of a ProfileReport, one column per graph."""
    table = Table(title=f"{report.bundle}: {report.model} ({report.format}, {report.runtime})")
    table.add_column("", style="bold")
    for g in report.graphs:
        table.add_column(g.graph, justify="right")
    rows: list[tuple[str, list[str]]] = []
    summaries = [g.summary() for g in report.graphs]
    rows.append(("cold load", [f"{s['load_ms']:.1f} ms" for s in summaries]))
    rows.append(("first inference", [f"{s['first_inference_ms']:.2f} ms" for s in summaries]))
    rows.append(("runs", [str(s["runs"]) for s in summaries]))
    for key, label in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("min_ms", "min"), ("max_ms", "max")):
        rows.append((label, [f"{s[key]:.3f} ms" for s in summaries]))
    rows.append(("mean ± stdev", [f"{s['mean_ms']:.3f} ± {s['stdev_ms']:.3f} ms" for s in summaries]))
    rows.append(("throughput", [f"{s['throughput_per_s']:.1f} /s" for s in summaries]))
    rows.append(("peak RSS", [f"{s['peak_rss_bytes'] / 2**20:.0f} MiB" for s in summaries]))
    rows.append(("RSS added by loading", [f"{s['model_memory_bytes'] / 2**20:.1f} MiB" for s in summaries]))
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
    return table


def ops_table(stats, limit: int = 15) -> Table:
    table = Table(title="time by operator")
    for col in ("op", "ran on", "calls/run", "ms/run", "share"):
        table.add_column(col, justify="left" if col in ("op", "ran on") else "right")
    for s in stats[:limit]:
        table.add_row(s.op, s.placement, str(s.calls), f"{s.total_ms:.3f}", f"{s.share:.1%}")
    if len(stats) > limit:
        rest = stats[limit:]
        table.add_row(f"({len(rest)} more)", "", "", f"{sum(s.total_ms for s in rest):.3f}",
                      f"{sum(s.share for s in rest):.1%}")  # fmt: skip
    return table


def _joules(j: float) -> str:
    return f"{j * 1e3:.3f} mJ" if j >= 1e-3 else f"{j * 1e6:.1f} µJ"


def _energy_cell(energy) -> str:
    if energy is None:
        return "-"
    if energy.below_noise_floor is not None:  # the numbers are in the energy line under the table
        return "[yellow]below noise floor[/yellow]"
    return _joules(energy.joules_per_inference)


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


def bench_table(rows, title: str) -> Table:
    table = Table(title=title)
    for col in ("format", "status", "MiB", "max err", "top-1", "p50 ms", "p90 ms", "energy / inf", "source"):
        table.add_column(col, justify="left" if col in ("format", "status", "source") else "right")
    for r in rows:
        status = "[green]ok[/green]" if r.status == "ok" else f"[red]{r.status}[/red]"
        table.add_row(
            r.format, status,
            "-" if r.size_bytes is None else f"{r.size_bytes / 2**20:.2f}",
            "-" if r.max_abs_err is None else f"{r.max_abs_err:.1e}",
            "-" if r.top1_agreement is None else f"{r.top1_agreement:.0%}",
            "-" if r.p50_ms is None else f"{r.p50_ms:.2f}",
            "-" if r.p90_ms is None else f"{r.p90_ms:.2f}",
            "-" if r.joules_per_inference is None else _joules(r.joules_per_inference),
            r.energy_source or "-",
        )  # fmt: skip
    return table
