"""The demo: ViT-Ti/16 (built in, random weights) to ExecuTorch, LiteRT and ONNX, each verified and timed.

Run with `make demo`. Bundles land in build/demo/; the table compares each runtime with PyTorch
eager measured in the same process.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rich.console import Console

from edgekit._native import quiet_toolchain_logs
from edgekit.profiling.compare import compare_formats
from edgekit.profiling.report import format_table, markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_tiny")
    parser.add_argument("--out", default="build/demo")
    parser.add_argument("--formats", default="pte,tflite,onnx", help="comma-separated formats to export and time")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    quiet_toolchain_logs()
    console = Console()
    with console.status("starting", spinner="dots") as status:
        rows = compare_formats(
            args.model,
            args.formats.split(","),
            Path(args.out),
            rounds=args.rounds,
            runs=args.runs,
            on_stage=status.update,
        )
    console.print(format_table(rows, f"{args.model}: every format verified against PyTorch, latency on this CPU"))
    console.print(f"bundles in {args.out}/  (try: .venv/bin/edgekit run {args.out}/{args.model}-pte --random)")
    if args.markdown:
        print(markdown_table(rows))
    if any(r.status != "ok" for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
