"""TinyViT latency per format vs PyTorch eager in the same process, against the issue's targets.

Targets: every format at or below 0.5x eager; ExecuTorch within 1.2x of the fastest format.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from edgekit._native import quiet_toolchain_logs
from edgekit.profiling.compare import compare_formats
from edgekit.profiling.report import format_table, markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tinyvit_5m")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--out", default="build/bench-tinyvit")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    quiet_toolchain_logs()
    console = Console()
    with console.status(args.model, spinner="dots") as status:
        rows = compare_formats(
            args.model, ["pte", "tflite", "onnx"], Path(args.out), config={"img_size": args.img_size},
            rounds=args.rounds, runs=args.runs, on_stage=status.update,
        )  # fmt: skip
    console.print(format_table(rows, f"{args.model} at {args.img_size} ({args.rounds} rounds x {args.runs} runs)"))
    timed = {r.format: r for r in rows if r.p50_ms is not None and r.format != "eager"}
    fastest = min(r.p50_ms for r in timed.values())
    for r in timed.values():
        console.print(f"{r.format}: {r.ratio_to_eager:.2f}x eager (target <= 0.5x) "
                      f"{'[green]met[/green]' if r.ratio_to_eager <= 0.5 else '[red]missed[/red]'}")  # fmt: skip
    if "pte" in timed:
        ratio = timed["pte"].p50_ms / fastest
        console.print(f"pte: {ratio:.2f}x the fastest format (target <= 1.2x) "
                      f"{'[green]met[/green]' if ratio <= 1.2 else '[red]missed[/red]'}")  # fmt: skip
    if args.markdown:
        print(markdown_table(rows))


if __name__ == "__main__":
    main()
