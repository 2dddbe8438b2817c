"""The command line of benchmarks made of parts: ``--parts a,b --rounds R --runs N --out DIR --json FILE``.

Each part is ``part(out_dir, rounds, runs, console, rows) -> rich Table``; it appends its JSON rows to ``rows``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from edgekit._native import quiet_toolchain_logs

Part = Callable[[Path, int, int, Console, list], object]


def run_parts(
    description: str, parts: dict[str, Part], default_out: str, default_runs: int, default_parts: str | None = None
) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=default_out)
    parser.add_argument(
        "--parts", default=default_parts or ",".join(parts), help=f"comma-separated: {', '.join(parts)}"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=default_runs)
    parser.add_argument("--json", help="write every row as JSON")
    args = parser.parse_args()
    quiet_toolchain_logs()
    console = Console(width=200)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list] = {}
    for part in args.parts.split(","):
        rows[part] = []
        console.print(parts[part](out, args.rounds, args.runs, console, rows[part]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
