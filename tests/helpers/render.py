"""Render what the CLI prints the way a pipe or an 80-column terminal gets it, and check nothing was cut."""

from __future__ import annotations

import io

from rich.console import Console

WIDTH = 80


def rendered(renderable, width: int = WIDTH) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, legacy_windows=False)
    console.print(renderable)
    return console.file.getvalue()


def assert_fits(text: str, whole: tuple[str, ...] = (), width: int = WIDTH) -> None:
    """No table line wider than ``width``, no cell cut short with an ellipsis, and every ``whole`` string on one
    line. (Free-text lines such as a path after "->" are printed unwrapped on purpose, so they can be copied.)"""
    lines = text.splitlines()
    table_lines = [line for line in lines if any(c in line for c in "│┃┏┗┌└━─")]
    assert table_lines, text
    assert all(len(line) <= width for line in table_lines), max(table_lines, key=len)
    assert "…" not in text, text
    missing = [w for w in whole if not any(w in line for line in lines)]
    assert missing == [], (missing, text)
