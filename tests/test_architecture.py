"""The layout rules ARCHITECTURE.md states, checked on the source: no import circles, the library never
imports the CLI, and library modules stay small unless they say at the top why not."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.imports import cycles, import_graph, module_files

PACKAGE = Path(__file__).resolve().parents[1] / "edgekit"
# Generated gRPC code is not ours to split.
GENERATED = ("_pb2",)
MAX_LINES = 450


def test_the_package_has_no_import_circle():
    assert cycles(import_graph(PACKAGE)) == []


def test_the_cycle_check_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_cli_imports_the_cli():
    graph = import_graph(PACKAGE)
    entry_points = ("edgekit.cli", "edgekit.__main__")  # `python -m edgekit` starts the command
    offenders = sorted(m for m, edges in graph.items() if not m.startswith(entry_points)
                       and any(e.startswith("edgekit.cli") for e in edges))  # fmt: skip
    assert offenders == []


def test_library_modules_are_small_or_say_why():
    too_long = []
    for name, path in module_files(PACKAGE).items():
        if any(tag in name for tag in GENERATED):
            continue
        text = path.read_text()
        if text.count("\n") > MAX_LINES and "Longer than" not in text[:2000]:
            too_long.append(f"{name} ({text.count(chr(10))} lines)")
    assert too_long == []
