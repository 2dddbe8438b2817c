"""INT8: one model trained on digits, exported FP32 and static INT8 for one format, both judged held out.

1. `edgekit train MODEL -o weights.pt` trains on scikit-learn's digits (the weights file names the dataset);
2. `edgekit export MODEL -w weights.pt --format FORMAT` (FP32) and the same with `--int8` (static: calibrated
   on the training split, the recipe chosen for this CPU; the export fails if INT8 loses more than 2 points);
3. `edgekit eval BUNDLE` runs each bundle's held-out split through its own runtime;
4. the held-out accuracy of both, the points lost and the size ratio are printed.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from edgekit.bundle import read_bundle

ACCURACY = re.compile(r"accuracy ([0-9.]+)%")


def edgekit(console: Console, *args: str) -> str:
    """Run one CLI command as a user would; its output is shown and returned."""
    console.print(f"[bold]$ edgekit {shlex.join(args)}[/bold]")
    proc = subprocess.run([sys.executable, "-m", "edgekit", *args], stdout=subprocess.PIPE, text=True)
    print(proc.stdout, end="", flush=True)
    if proc.returncode:
        raise SystemExit(proc.returncode)
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/demo-int8")
    parser.add_argument("--model", default="vit_digits", help="a built-in digits classifier (vit_digits, cnn_small)")
    parser.add_argument("--format", default="tflite", help="pte, tflite or onnx")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    console = Console()
    out = Path(args.out)
    weights = out / f"{args.model}.pt"
    console.rule(f"{args.model} on digits: FP32 and INT8 {args.format} bundles through their runtime")
    edgekit(console, "train", args.model, "--epochs", str(args.epochs), "-o", str(weights))
    accuracy, size = {}, {}
    for precision, flags in (("fp32", ()), ("int8", ("--int8",))):
        bundle = out / f"{args.model}-{args.format}-{precision}"
        edgekit(console, "export", args.model, "-w", str(weights), "--format", args.format, *flags, "-o", str(bundle))
        printed = edgekit(console, "eval", str(bundle))
        match = ACCURACY.search(printed)
        if not match:
            console.print(f"no accuracy in the output of `edgekit eval {bundle}`")
            raise SystemExit(1)
        accuracy[precision] = float(match.group(1))
        size[precision] = read_bundle(bundle).manifest.total_bytes
    console.print(
        f"{args.model} {args.format}: held-out accuracy FP32 {accuracy['fp32']:.2f}%, INT8 {accuracy['int8']:.2f}% "
        f"({accuracy['fp32'] - accuracy['int8']:+.2f} points lost); bundle {size['fp32'] / 1024:.1f} KiB -> "
        f"{size['int8'] / 1024:.1f} KiB, INT8 is {size['int8'] / size['fp32']:.2f}x the FP32 size",
        soft_wrap=True,
    )


if __name__ == "__main__":
    main()
