"""The split demo: ED-ViT over three worker processes on this machine.

1. `edgekit split vit_digits --devices examples/split/devices.yaml -o build/demo-split/plan` trains the
   ViT on scikit-learn's digits, builds three class-wise pruned sub-models, one per device and format
   (ExecuTorch, LiteRT, ONNX), and a fusion head;
2. three `edgekit worker` processes start on loopback ports;
3. `edgekit infer-split ... --eval digits` deploys the shards (sha256-checked), classifies the held-out
   split through the workers and prints accuracy and the per-worker breakdown.

Each step is the CLI command a user would type; they are printed before they run.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from edgekit.splitter.local import LocalWorkers

HERE = Path(__file__).resolve().parent


def edgekit(console: Console, *args: str) -> None:
    console.print(f"[bold]$ edgekit {shlex.join(args)}[/bold]")
    proc = subprocess.run([sys.executable, "-m", "edgekit", *args])
    if proc.returncode:
        raise SystemExit(proc.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/demo-split")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs of the full model")
    parser.add_argument("--finetune-epochs", type=int, default=40, help="distillation epochs per shard")
    parser.add_argument("--seed", type=int, default=0, help="training, class partition and fusion seed")
    args = parser.parse_args()
    console = Console()
    plan = Path(args.out) / "plan"
    console.rule("ED-ViT split inference over three local worker processes")
    edgekit(console, "split", "vit_digits", "--devices", str(HERE / "devices.yaml"), "-o", str(plan),
            "--epochs", str(args.epochs), "--finetune-epochs", str(args.finetune_epochs),
            "--seed", str(args.seed))  # fmt: skip
    with LocalWorkers(["phone", "pi5", "jetson"], root=Path(args.out) / "workers") as workers:
        console.print(", ".join(f"worker {n} on {a}" for n, a in workers.addresses.items()))
        spec = ",".join(f"{n}={a}" for n, a in workers.addresses.items())
        edgekit(console, "infer-split", str(plan), "--workers", spec, "--eval", "digits", "--timeout", "10")


if __name__ == "__main__":
    main()
