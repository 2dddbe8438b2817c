"""Render comparison rows as a rich table (the library computes, callers decide where to print)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

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
