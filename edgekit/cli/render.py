"""Small rendering helpers shared by the commands: counts, sizes, yes/no cells, tables that fit 80 columns."""

from __future__ import annotations

from rich.markup import escape

from edgekit.tables import WrappingTable


def count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def yes(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]no[/red]"


def text(value: object) -> str:
    """User or package text inside a table cell: brackets are shown, not read as rich markup."""
    return escape(str(value))


def table(title: str | None, columns: dict[str, str], keep: tuple[str, ...] = (), **kwargs) -> WrappingTable:
    """A table whose cells wrap instead of being cut: ``columns`` maps each header to its justification
    ("left" / "right"); the columns in ``keep`` (names, numbers) stay on one line, the others wrap between
    words first. Narrow terminals and pipes then get taller rows, never "clas…"."""
    out = WrappingTable(title=title, **kwargs)
    for name, justify in columns.items():
        out.add_column(name, justify=justify, no_wrap=name in keep)
    return out
