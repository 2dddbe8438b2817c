"""SLAB's claim on our runtimes: the folded PRepBN model vs its LayerNorm twin, and their digits accuracy.

1. Latency: slab_deit_tiny (RepBN folded away at export) and slab_deit_tiny_ln at 224, per format,
   interleaved rounds in one process; the ratio RepBN / LayerNorm per format.
2. Accuracy: both trained on scikit-learn's digits (8x8, 2x2 patches, held-out split), PRepBN with
   its LayerNorm -> RepBN schedule.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekit import runtimes
from edgekit._native import quiet_toolchain_logs
from edgekit.exporters.pipeline import export
from edgekit.inputs import make_inputs
from edgekit.models import create_model
from edgekit.profiling.latency import measure
from edgekit.training import train_classifier

MODELS = ("slab_deit_tiny", "slab_deit_tiny_ln")
DIGITS = {"img_size": 8, "patch_size": 2, "in_chans": 1, "num_classes": 10}


def latency_table(out: Path, rounds: int, runs: int, console: Console) -> Table:
    loaded = {}
    with console.status("exporting", spinner="dots") as status:
        for model in MODELS:
            for fmt in ("pte", "tflite", "onnx"):
                status.update(f"exporting {model} to {fmt}")
                result = export(model, format=fmt, out_dir=out / f"{model}-{fmt}", samples=2)
                loaded[model, fmt] = runtimes.load(result.bundle_dir)
        sample = make_inputs(loaded[MODELS[0], "pte"].input_specs, 1, seed=0)[0]
        times: dict[tuple[str, str], list[float]] = {key: [] for key in loaded}
        for r in range(rounds):
            status.update(f"timing round {r + 1}/{rounds}")
            for key, rt in loaded.items():
                times[key].append(measure(lambda rt=rt: rt.run(sample), runs=runs, warmup=3).median)
    table = Table(title=f"SLAB DeiT-T at 224: folded RepBN vs LayerNorm twin ({rounds} rounds x {runs} runs)")
    for col in ("format", "RepBN ms", "LayerNorm ms", "RepBN / LayerNorm"):
        table.add_column(col, justify="right")
    for fmt in ("pte", "tflite", "onnx"):
        rep, ln = times[MODELS[0], fmt], times[MODELS[1], fmt]
        ratio = statistics.median(a / b for a, b in zip(rep, ln, strict=True))
        table.add_row(fmt, f"{statistics.median(rep):.2f}", f"{statistics.median(ln):.2f}", f"{ratio:.3f}")
    return table


def accuracy_table(epochs: int, depth: int | None, console: Console) -> Table:
    table = Table(title=f"digits held-out accuracy ({epochs} epochs, seed 0)")
    for col in ("model", "norm", "parameters", "accuracy", "train s"):
        table.add_column(col)
    for model in MODELS:
        config = {**DIGITS, **({"depth": depth} if depth else {})}
        spec = create_model(model, **config)
        with console.status(f"training {model}", spinner="dots") as status:
            result = train_classifier(
                spec, "digits", epochs=epochs, lr=1e-3,
                on_epoch=lambda e, loss, acc, model=model: status.update(f"{model}: epoch {e}/{epochs} acc {acc:.1%}"),
            )  # fmt: skip
        norm = "PRepBN -> RepBN" if spec.config["norm"] == "prepbn" else "LayerNorm"
        table.add_row(model, norm, f"{spec.parameters:,}", f"{result.test_accuracy:.2%}", f"{result.train_seconds:.0f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/bench-reparam")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--depth", type=int, default=None, help="override depth for the digits runs")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    quiet_toolchain_logs()
    console = Console()
    if not args.skip_latency:
        console.print(latency_table(Path(args.out), args.rounds, args.runs, console))
    if not args.skip_accuracy:
        console.print(accuracy_table(args.epochs, args.depth, console))


if __name__ == "__main__":
    main()
