"""Rich tables that stay readable when the terminal (or a pipe, which rich gives 80 columns) is narrow: a cell
wraps between words, and no column is squeezed below its longest word, so names are never broken or cut."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


class WrappingTable(Table):
    """A rich Table whose columns wrap at word boundaries and never shrink below their longest word."""

    def add_column(self, *args, **kwargs) -> None:
        kwargs.setdefault("overflow", "fold")
        super().add_column(*args, **kwargs)

    def __rich_console__(self, console, options):
        for column in self.columns:
            cells = [column.header, *column._cells]
            words = [w for cell in cells for w in _plain(cell).split()]
            column.min_width = max([column.min_width or 0, *(len(w) for w in words)])
        yield from super().__rich_console__(console, options)


def _plain(cell) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return ""
