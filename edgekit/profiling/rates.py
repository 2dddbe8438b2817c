"""The accuracy-latency curve of a token-merging bundle: one row per rate from a profile of every graph."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from edgekit.layouts import TokenMergeLayout


@dataclass(frozen=True)
class RateRow:
    graph: str
    r: int
    mlp_tokens: int  # tokens the last block's MLP sees
    flops: int | None
    accuracy: float | None
    p50_ms: float
    p90_ms: float
    speedup: float | None  # p50 of the lowest rate over this one's, in the same profile


def rate_rows(report, layout: TokenMergeLayout, flops: dict[str, int | None]) -> list[RateRow]:
    """Rows in rate order; ``report`` is a ProfileReport of the bundle, ``flops`` each graph's count."""
    profiles = {g.graph: g for g in report.graphs}
    base = profiles[layout.rates[0].graph].latency.median if layout.rates else None
    rows = []
    for rate in layout.rates:
        lat = profiles[rate.graph].latency
        speedup = base / lat.median if base and lat.median else None
        rows.append(RateRow(rate.graph, rate.r, rate.mlp_tokens[-1], flops.get(rate.graph), rate.accuracy,
                            lat.median, lat.percentile(90), speedup))  # fmt: skip
    return rows


def rate_table(rows: list[RateRow], title: str) -> Table:
    table = Table(title=title)
    for name in ("graph", "r", "last MLP tokens", "MFLOPs", "accuracy", "p50 ms", "p90 ms", "speed-up"):
        table.add_column(name, justify="left" if name == "graph" else "right")
    for row in rows:
        table.add_row(
            row.graph, str(row.r), str(row.mlp_tokens), "-" if row.flops is None else f"{row.flops / 1e6:.2f}",
            "-" if row.accuracy is None else f"{row.accuracy:.2%}", f"{row.p50_ms:.3f}", f"{row.p90_ms:.3f}",
            "-" if row.speedup is None else f"{row.speedup:.2f}x",
        )  # fmt: skip
    return table


def plot_rates(rows: list[RateRow], path, title: str) -> None:
    """Accuracy against p90 latency, one point per rate (latency against rate when no accuracy was recorded)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from edgekit.errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "plot", "--plot") from None
    fig, ax = plt.subplots(figsize=(6, 4))
    have_accuracy = all(r.accuracy is not None for r in rows)
    xs = [r.p90_ms for r in rows]
    ys = [100 * r.accuracy for r in rows] if have_accuracy else [r.r for r in rows]
    ax.plot(xs, ys, "o-", color="#4477aa")
    for row, x, y in zip(rows, xs, ys, strict=True):
        ax.annotate(f"r={row.r}", (x, y), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("p90 latency (ms)")
    ax.set_ylabel("held-out accuracy (%)" if have_accuracy else "tokens merged per block (r)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
