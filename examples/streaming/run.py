"""The streaming demo: a spiking LMUFormer reads a handwritten digit row by half-row, on device, as it arrives.

1. `edgekit train lmuformer_spiking` on scikit-learn's digits (16 frames of 4 pixels each);
2. `edgekit export lmuformer_spiking --streaming --format tflite`: one LiteRT graph that takes one frame plus
   the whole state (conv buffers, LMU memory, membrane potentials) and returns the prediction so far plus the
   new state, verified frame by frame against the whole-sequence PyTorch model;
3. `edgekit stream` on a held-out digit: the running prediction after every frame;
4. `edgekit eval` on the streaming bundle: held-out accuracy, every digit streamed frame by frame.

Each step is the CLI command a user would type; it is printed before it runs.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from rich.console import Console

from edgekit.data import load_dataset


def edgekit(console: Console, *args: str) -> None:
    console.print(f"[bold]$ edgekit {shlex.join(args)}[/bold]")
    proc = subprocess.run([sys.executable, "-m", "edgekit", *args])
    if proc.returncode:
        raise SystemExit(proc.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/demo-streaming")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    console = Console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    console.rule("A spiking LMUFormer streaming digits frame by frame (LiteRT)")
    weights, bundle, sequence = out / "snn.pt", out / "snn-tflite-stream", out / "digit.npy"
    edgekit(console, "train", "lmuformer_spiking", "--epochs", str(args.epochs), "-o", str(weights))
    edgekit(console, "export", "lmuformer_spiking", "-w", str(weights), "--format", "tflite", "--streaming",
            "-o", str(bundle))  # fmt: skip
    split = load_dataset("digits", (1, 16, 4))
    np.save(sequence, split.x_test[0])
    console.print(f"held-out digit 0 is a {split.y_test[0]}, saved as {sequence} (16 frames x 4 pixels)")
    edgekit(console, "stream", str(bundle), "--input", str(sequence))
    edgekit(console, "eval", str(bundle))


if __name__ == "__main__":
    main()
