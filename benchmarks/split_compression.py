"""How small ED-ViT shards get, and what the fused answer loses: sizes and accuracy of class-wise splits at N devices.

The full model is by default vit_digits at width 96, depth 6, 6 heads of 16, MLP 192 (452k parameters, 1.8 MB in
fp32; 30 epochs on scikit-learn's digits; ``--config`` / ``--epochs`` choose another), trained once. For each N
a split is planned from those weights with each shard's parameter budget set to 1 / (shrink x N) of the full
feature extractor (``--shrink``, default 2.75: an 11x smaller shard at N = 4, 27.5x at N = 10), every shard cut
by the global structure search (width, blocks, heads, head dimension, MLP neurons), distilled and exported to
ONNX; the fused held-out accuracy is computed from the exported shards' own runtimes, with the fusion head
retrained with seeds 0, 1 and 2 on the same features (the spread is what the fusion seed alone moves). Sizes and
accuracy only: timings on a shared, loaded machine say nothing about N devices (benchmarks/split.py runs the
shards through workers).

Targets (issue #17): the largest shard at least 10x smaller than the full model at N = 4 and 25x at N = 10,
all shards together no larger than the full model at every N, fused accuracy within 1 point of the full model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from split import PARTITION_HELP, SHRINK, fusion_seed_spread

from edgekit._native import quiet_toolchain_logs
from edgekit.cpu import host_cpu
from edgekit.data import load_dataset
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.edvit import SplitSettings, plan_split

CONFIG = {"dim": 96, "depth": 6, "heads": 6, "mlp_ratio": 2.0}  # benchmarks/split.py's model
TARGETS = {4: 10.0, 10: 25.0}  # N -> the largest shard's required reduction


def train_full(out: Path, config: dict, epochs: int, console: Console) -> Path:
    from edgekit.models import prepare_model
    from edgekit.training import save_weights, train_classifier

    weights = out / f"vit_digits_{config['dim']}x{config['depth']}_{epochs}ep.pt"
    if weights.is_file():
        return weights
    spec = prepare_model("vit_digits", **config)
    with console.status(f"training vit_digits {config} for {epochs} epochs", spinner="dots"):
        result = train_classifier(spec, "digits", epochs=epochs, lr=2e-3)
    console.print(f"full model: {spec.parameters:,} parameters, held-out {result.test_accuracy:.2%}")
    return save_weights(weights, spec)


def run(n: int, weights: Path, out: Path, args, console: Console) -> dict:
    devices = [DeviceSpec(f"pi{i}", None, 512_000_000, 10.0, "onnx") for i in range(n)]
    settings = SplitSettings(keep_ratio=1 / (args.shrink * n), finetune_epochs=args.finetune_epochs,
                             partition=args.partition)  # fmt: skip
    start = time.perf_counter()
    with console.status(f"N={n}: planning", spinner="dots") as status:
        plan = plan_split("vit_digits", devices, out / f"plan-n{n}", weights=weights, config=args.config,
                          settings=settings, on_stage=status.update)  # fmt: skip
    split = load_dataset("digits", tuple(plan.input["shape"]))
    report = plan.report
    full = report["full"]["feature_parameters"]
    seeds = fusion_seed_spread(plan, split)
    return {
        "n": n,
        "full_parameters": full,
        "full_accuracy": report["full"]["accuracy"],
        "fused_accuracy": report["split"]["accuracy"],
        "fusion_seed_accuracy": seeds,
        "largest_reduction": full / max(s.parameters for s in plan.shards),
        "total_fraction": sum(s.parameters for s in plan.shards) / full,
        "largest_bytes": max(s.size_bytes for s in plan.shards),
        "total_bytes": sum(s.size_bytes for s in plan.shards),
        "shards": [
            {
                "name": s.name,
                "classes": list(s.classes),
                "parameters": s.parameters,
                "bytes": s.size_bytes,
                "subset_accuracy": report["split"]["subset_accuracy"][s.name],
                **report["split"]["structure"][s.name],
            }
            for s in plan.shards
        ],  # fmt: skip
        "plan_seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/bench-compression")
    parser.add_argument("--devices", default="2,4,10", help="N values.")
    parser.add_argument("--shrink", type=float, default=SHRINK, help="Each shard at most 1/(shrink x N) of the model.")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--config", type=json.loads, default=CONFIG, help="The full model's vit_digits settings.")
    parser.add_argument("--finetune-epochs", type=int, default=SplitSettings.finetune_epochs)
    parser.add_argument("--partition", default="confusion", help=PARTITION_HELP)
    parser.add_argument("--json", help="Write the rows as JSON.")
    args = parser.parse_args()
    quiet_toolchain_logs()
    console = Console(width=200)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = train_full(out, args.config, args.epochs, console)
    rows = []
    for n in (int(v) for v in args.devices.split(",")):
        rows.append(run(n, weights, out, args, console))
        if args.json:  # after every N: a long run keeps what it measured
            Path(args.json).write_text(json.dumps(rows, indent=2))
    full = rows[0]
    title = (f"ED-ViT shards of vit_digits {args.config}, {args.epochs} epochs "
             f"({full['full_parameters']:,} feature parameters, "
             f"{full['full_accuracy']:.2%} held out) on digits, ONNX, {args.finetune_epochs} distillation epochs, "
             f"{args.partition} partition; "
             f"{host_cpu().summary()}, load {os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    table = Table(title=title)
    for col in ("N", "fused acc", "drop (pts)", "fusion seeds 0-2", "largest shard", "reduction", "target",
                "all shards", "largest KB", "all KB"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        spread = r["fusion_seed_accuracy"]
        target = TARGETS.get(r["n"])
        table.add_row(
            str(r["n"]), f"{r['fused_accuracy']:.2%}", f"{100 * (r['full_accuracy'] - r['fused_accuracy']):+.2f}",
            " / ".join(f"{a:.2%}" for a in spread)
            + f" (mean drop {100 * (r['full_accuracy'] - statistics.mean(spread)):+.2f})",
            f"{max(s['parameters'] for s in r['shards']):,}", f"{r['largest_reduction']:.1f}x",
            "-" if target is None else f">= {target:.0f}x", f"{r['total_fraction']:.1%}",
            f"{r['largest_bytes'] / 1e3:.0f}", f"{r['total_bytes'] / 1e3:.0f}",
        )  # fmt: skip
    console.print(table)
    kept = Table(title="What each shard kept (width; per kept block: heads x head dim, MLP)")
    for col in ("N", "shard", "classes", "params", "width", "blocks kept", "heads x dim", "MLP", "subset acc"):
        kept.add_column(col)
    for r in rows:
        for s in r["shards"]:
            kept.add_row(
                str(r["n"]), s["name"], ",".join(map(str, s["classes"])), f"{s['parameters']:,}", str(s["width"]),
                ",".join(map(str, s["blocks_kept"])),
                " ".join(f"{h}x{d}" for h, d in zip(s["heads"], s["head_dim"], strict=True)),
                " ".join(map(str, s["mlp"])), f"{s['subset_accuracy']:.2%}",
            )  # fmt: skip
    console.print(kept)
    for r in rows:
        drop = 100 * (r["full_accuracy"] - r["fused_accuracy"])
        worst = 100 * (r["full_accuracy"] - min(r["fusion_seed_accuracy"]))
        target = TARGETS.get(r["n"])
        verdicts = [
            f"accuracy within 1 point: {'met' if drop <= 1 else 'missed'} (drop {drop:+.2f}, worst fusion seed "
            f"{worst:+.2f})",
            f"all shards <= full: {'met' if r['total_fraction'] <= 1 else 'missed'} ({r['total_fraction']:.1%})",
        ]
        if target:
            met = "met" if r["largest_reduction"] >= target else "missed"
            verdicts.append(f"largest shard >= {target:.0f}x smaller: {met} ({r['largest_reduction']:.1f}x)")
        console.print(f"N={r['n']}: " + "; ".join(verdicts))


if __name__ == "__main__":
    main()
