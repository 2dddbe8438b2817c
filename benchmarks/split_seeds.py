"""The split demo's recipe over seeds: does ED-ViT stay within 1 point of the full model for every seed?

``examples/split/run.py --seed S`` trains vit_digits (the default, 135k parameters) for 30 epochs with seed S,
partitions the classes over the demo's three devices, distils one pruned sub-model per device and trains the
fusion head, all with the same seed, then exports. This script does the same up to the export (the accuracy
the demo prints as "fused split" is the fusion head's, computed here the same way before anything is
exported), for each seed and each recipe asked for, and prints full and fused held-out accuracy, the drop, and
the mean and range over seeds. ``--recipe`` takes SplitSettings fields as JSON, one recipe per flag (``epochs``
among them: the full model's); none means the default recipe (what the demo runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekit._native import quiet_toolchain_logs
from edgekit.cpu import host_cpu
from edgekit.data import load_dataset
from edgekit.splitter.classwise import build_submodels, fuse
from edgekit.splitter.devices import load_devices
from edgekit.splitter.strategy import SplitJob, SplitSettings
from edgekit.training import evaluate_module

DEVICES = Path(__file__).resolve().parents[1] / "examples" / "split" / "devices.yaml"


def full_model(seed: int, epochs: int, cache: Path):
    """vit_digits trained as `edgekit split --epochs E --seed S` trains it (cached per seed and epochs)."""
    from edgekit.models import prepare_model
    from edgekit.training import save_weights, train_classifier

    weights = cache / f"vit_digits_seed{seed}_{epochs}ep.pt"
    if weights.is_file():
        return prepare_model("vit_digits", weights)
    spec = prepare_model("vit_digits")
    train_classifier(spec, "digits", epochs=epochs, seed=seed)
    save_weights(weights, spec)
    return spec


def fused_accuracy(spec, settings: SplitSettings, staging: Path) -> tuple[float, float, float]:
    split = load_dataset("digits", tuple(spec.example_inputs[0].shape))
    spec.module.eval()
    full = evaluate_module(spec, split)
    job = SplitJob(spec, "digits", split, full, load_devices(DEVICES), settings, staging, lambda _m: None, 0.0)
    clock = time.perf_counter()
    subs = build_submodels(job)
    fusion = fuse(subs.models, split, settings)
    return full, fusion.accuracy, time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--recipe", action="append", type=json.loads, help="SplitSettings fields as JSON")
    parser.add_argument("--out", default="build/bench-split-seeds")
    parser.add_argument("--json", help="Write the rows as JSON.")
    args = parser.parse_args()
    quiet_toolchain_logs()
    console = Console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipes = args.recipe or [{}]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for recipe in recipes:
        for seed in seeds:
            settings = replace(SplitSettings(seed=seed), **recipe)
            with console.status(f"seed {seed}, recipe {recipe or 'default'}", spinner="dots"):
                spec = full_model(seed, settings.epochs, out)
                full, fused, seconds = fused_accuracy(spec, settings, out)
            rows.append({"recipe": recipe, "seed": seed, "full": full, "fused": fused, "seconds": seconds})
            console.print(f"recipe {json.dumps(recipe) if recipe else 'default'}, seed {seed}: full {full:.2%}, "
                          f"fused {fused:.2%} ({100 * (full - fused):+.2f} points lost, {seconds:.0f} s)")  # fmt: skip
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=2))
    machine = f"{host_cpu().summary()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end"
    table = Table(title=f"split demo recipe over seeds {args.seeds} (vit_digits, 3 devices, 359 held out); {machine}")
    for col in ("recipe", "full acc", "fused acc", "drop (pts)", "worst", "within 1"):
        table.add_column(col, justify="right", overflow="fold")
    for recipe in recipes:
        mine = [r for r in rows if r["recipe"] == recipe]
        drops = [100 * (r["full"] - r["fused"]) for r in mine]
        table.add_row(
            json.dumps(recipe) if recipe else "default",
            " / ".join(f"{r['full']:.2%}" for r in mine),
            " / ".join(f"{r['fused']:.2%}" for r in mine),
            f"{statistics.mean(drops):+.2f} ({min(drops):+.2f}..{max(drops):+.2f})",
            f"{max(drops):+.2f}",
            "yes" if max(drops) <= 1.0 else "no",
        )
    console.print(table)


if __name__ == "__main__":
    main()
