"""Every built-in model x every format: size, max error vs PyTorch, median latency, ratio to eager.

Full-size configurations (vit_tiny is ViT-Ti/16 at 224). Medians over interleaved rounds; the
ratio is computed per round against eager in the same process, then the median is taken.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rich.console import Console

from edgekit._native import quiet_toolchain_logs
from edgekit.formats import FORMATS
from edgekit.models import list_models
from edgekit.profiling.compare import compare_formats
from edgekit.profiling.report import format_table, markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list_models())
    parser.add_argument("--formats", nargs="*", default=FORMATS.names())
    parser.add_argument("--out", default="build/bench")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    quiet_toolchain_logs()
    console = Console()
    for model in args.models:
        with console.status(model, spinner="dots") as status:
            rows = compare_formats(
                model,
                args.formats,
                Path(args.out),
                rounds=args.rounds,
                runs=args.runs,
                threads=args.threads,
                on_stage=status.update,
            )
        console.print(format_table(rows, f"{model} ({args.rounds} rounds x {args.runs} runs, medians)"))
        if args.markdown:
            print(f"\n**{model}**\n\n{markdown_table(rows)}\n")


if __name__ == "__main__":
    main()
