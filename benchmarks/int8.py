"""INT8 against FP32 in every format: size, held-out accuracy, top-1 agreement, latency and speedup.

1. accuracy  — cnn_small and vit_digits trained on scikit-learn's digits; fp32 / int8 (static) / int8-dynamic
               bundles per format; accuracy on the 359 held-out digits.
2. attention — vit_digits trained with softmax, clipped softmax and gated attention (Quantizable Transformers);
               the W8A8 (static) accuracy drop per format, and the activation outliers that cause it
               (largest |activation| of the residual stream and its kurtosis, in PyTorch on the held-out set).
3. latency   — vit_tiny and tinyvit_5m at 224 (untrained: agreement with FP32 on random inputs, no accuracy);
               fp32 vs int8 medians in interleaved rounds on the same runtime.

The default parts are accuracy and latency; static INT8 uses the recipe chosen for this machine's CPU
(edgekit/exporters/int8_recipes.py), named in every row, and the CPU and its INT8 flags head the output.

Exports keep disagreeing bundles (allow_mismatch) so that a failed gate is a row, not a crash; the
"gate" column says whether the export would have passed.
"""

from __future__ import annotations

import functools
import os
import statistics
from pathlib import Path

import torch
from parts import run_parts
from rich.console import Console
from rich.table import Table

from edgekit import runtimes
from edgekit.cpu import host_cpu
from edgekit.data import load_dataset
from edgekit.evaluation import evaluate_bundle
from edgekit.exporters.pipeline import export
from edgekit.inputs import make_inputs
from edgekit.models import prepare_model
from edgekit.profiling.latency import measure
from edgekit.training import save_weights, train_classifier

FORMATS = ("pte", "tflite", "onnx")
PRECISIONS = ("fp32", "int8", "int8-dynamic")
EPOCHS = {"cnn_small": 15, "vit_digits": 30}


def bundle_bytes(result) -> int:
    return result.manifest.total_bytes


def recipe(result) -> str:
    q = result.manifest.quantization
    return (q.scheme.recipe or "-") if q is not None else "-"


def train(model: str, out: Path, console: Console, **config) -> Path:
    tag = "-".join(f"{k}={v}" for k, v in config.items())
    path = out / f"{model}{'-' + tag if tag else ''}.pt"
    if path.exists():
        return path
    spec = prepare_model(model, **config)
    with console.status(f"training {model} {tag}"):
        result = train_classifier(spec, "digits", epochs=EPOCHS[model])
    console.log(f"{model} {tag}: {result.test_accuracy:.2%} after {EPOCHS[model]} epochs")
    return save_weights(path, spec, {"dataset": "digits", "test_accuracy": result.test_accuracy})


def timed(bundles: dict, rounds: int, runs: int) -> dict:
    """Median latency per bundle over interleaved rounds (so drift on a shared machine hits all alike)."""
    loaded = {key: runtimes.load(path) for key, path in bundles.items()}
    feeds = {key: make_inputs(rt.input_specs, 1, seed=0)[0] for key, rt in loaded.items()}
    samples: dict = {key: [] for key in loaded}
    for _ in range(rounds):
        for key, rt in loaded.items():
            samples[key].append(measure(lambda rt=rt, f=feeds[key]: rt.run(f), runs=runs, warmup=3).median)
    for rt in loaded.values():
        rt.close()
    return {key: statistics.median(v) for key, v in samples.items()}


def accuracy_part(out: Path, rounds: int, runs: int, console: Console, rows: list) -> Table:
    results, paths = {}, {}
    for model in ("cnn_small", "vit_digits"):
        weights = train(model, out, console)
        for fmt in FORMATS:
            for precision in PRECISIONS:
                console.log(f"export {model} {fmt} {precision}")
                result = export(model, format=fmt, precision=precision, weights=weights, allow_mismatch=True,
                                out_dir=out / f"{model}-{fmt}-{precision}", samples=4)  # fmt: skip
                results[model, fmt, precision] = result
                paths[model, fmt, precision] = result.bundle_dir
    latency = timed(paths, rounds, runs)
    table = Table(title=f"digits models: INT8 vs FP32 per format (median of {rounds} rounds x {runs} runs)")
    for col in ("model", "format", "precision", "recipe", "size", "vs fp32", "accuracy", "drop pts", "top-1 agree",
                "ms", "speedup", "off delegate", "gate"):  # fmt: skip
        table.add_column(col, justify="right")
    for (model, fmt, precision), result in results.items():
        base = results[model, fmt, "fp32"]
        v = result.validation
        if precision == "fp32":
            accuracy, agree, drop = evaluate_bundle(result.bundle_dir).accuracy, v.top1_agreement, 0.0
            reference = accuracy
        else:
            accuracy, agree, drop = v.accuracy, v.top1_agreement, v.accuracy_drop
            reference = v.reference_accuracy
        row = {
            "model": model, "format": fmt, "precision": precision, "recipe": recipe(result),
            "bytes": bundle_bytes(result),
            "size_ratio": bundle_bytes(result) / bundle_bytes(base), "accuracy": accuracy, "fp32_accuracy": reference,
            "drop_points": drop, "top1_agreement": agree, "ms": latency[model, fmt, precision],
            "speedup": latency[model, fmt, "fp32"] / latency[model, fmt, precision], "passed": v.passed,
            "undelegated_ops": result.manifest.export.undelegated_op_count,
        }  # fmt: skip
        rows.append(row)
        table.add_row(model, fmt, precision, row["recipe"], f"{row['bytes'] / 1024:.0f} KiB",
                      f"{row['size_ratio']:.2f}x", f"{accuracy:.2%}", f"{drop:+.2f}", f"{agree:.1%}",
                      f"{row['ms']:.3f}", f"{row['speedup']:.2f}x", _count(row["undelegated_ops"]),
                      "pass" if v.passed else "FAIL")  # fmt: skip
    return table


def outliers(weights: Path) -> tuple[float, float]:
    """Largest |activation| of any block output (the residual stream) and its kurtosis, on held-out digits."""
    spec = prepare_model("vit_digits", weights)
    split = load_dataset("digits", spec.input_specs[0].shape)
    captured: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda _m, _i, o: captured.append(o.detach())) for b in spec.module.blocks]
    with torch.no_grad():
        spec.module(torch.from_numpy(split.x_test))
    for hook in hooks:
        hook.remove()
    values = torch.cat([c.flatten() for c in captured]).double()
    centred = values - values.mean()
    kurtosis = float((centred**4).mean() / (centred**2).mean() ** 2)
    return float(values.abs().max()), kurtosis


def attention_part(out: Path, _rounds: int, _runs: int, console: Console, rows: list) -> Table:
    table = Table(title="outlier-free attention: vit_digits W8A8 (static INT8) accuracy per format")
    per_format = [f"{f} int8" for f in FORMATS] + [f"{f} drop" for f in FORMATS]
    columns = ("attention", "max |x|", "kurtosis", "FP32", *per_format)
    for col in columns:
        table.add_column(col, justify="right")
    for kind in ("softmax", "clipped", "gated"):
        weights = train("vit_digits", out, console, attention=kind)
        peak, kurtosis = outliers(weights)
        accuracies, drops, fp32 = [], [], None
        for fmt in FORMATS:
            console.log(f"export vit_digits attention={kind} {fmt} int8")
            result = export("vit_digits", format=fmt, precision="int8", weights=weights, allow_mismatch=True,
                            out_dir=out / f"attn-{kind}-{fmt}")  # fmt: skip
            v = result.validation
            fp32 = v.reference_accuracy
            accuracies.append(v.accuracy)
            drops.append(v.accuracy_drop)
            rows.append({"attention": kind, "format": fmt, "fp32_accuracy": fp32, "accuracy": v.accuracy,
                         "drop_points": v.accuracy_drop, "max_abs": peak, "kurtosis": kurtosis})  # fmt: skip
        table.add_row(kind, f"{peak:.1f}", f"{kurtosis:.1f}", f"{fp32:.2%}", *(f"{a:.2%}" for a in accuracies),
                      *(f"{d:+.2f}" for d in drops))  # fmt: skip
    return table


def latency_part(out: Path, rounds: int, runs: int, console: Console, rows: list,
                 models: tuple[str, ...] = ("vit_tiny", "tinyvit_5m")) -> Table:  # fmt: skip
    results, paths = {}, {}
    for model in models:
        for fmt in FORMATS:
            for precision in ("fp32", "int8"):
                console.log(f"export {model} {fmt} {precision}")
                result = export(model, format=fmt, precision=precision, allow_mismatch=True, samples=4,
                                calib_samples=32, out_dir=out / f"{model}-{fmt}-{precision}")  # fmt: skip
                results[model, fmt, precision] = result
                paths[model, fmt, precision] = result.bundle_dir
    latency = timed(paths, rounds, runs)
    table = Table(title=f"224x224 models (untrained): INT8 vs FP32 latency (median of {rounds} rounds x {runs} runs)")
    for col in ("model", "format", "precision", "recipe", "size", "vs fp32", "top-1 agree", "cosine", "ms",
                "speedup", "off delegate", "gate"):  # fmt: skip
        table.add_column(col, justify="right")
    for (model, fmt, precision), result in results.items():
        base = results[model, fmt, "fp32"]
        v = result.validation
        row = {
            "model": model, "format": fmt, "precision": precision, "recipe": recipe(result),
            "bytes": bundle_bytes(result),
            "size_ratio": bundle_bytes(result) / bundle_bytes(base), "top1_agreement": v.top1_agreement,
            "cosine": v.cosine, "ms": latency[model, fmt, precision],
            "speedup": latency[model, fmt, "fp32"] / latency[model, fmt, precision],
            "undelegated_ops": result.manifest.export.undelegated_op_count, "passed": v.passed,
        }  # fmt: skip
        rows.append(row)
        table.add_row(model, fmt, precision, row["recipe"], f"{row['bytes'] / 2**20:.1f} MiB",
                      f"{row['size_ratio']:.2f}x", f"{row['top1_agreement']:.1%}", f"{row['cosine']:.4f}",
                      f"{row['ms']:.2f}", f"{row['speedup']:.2f}x", _count(row["undelegated_ops"]),
                      "pass" if v.passed else "FAIL")  # fmt: skip
    return table


def _count(ops: int | None) -> str:
    """Ops left outside the XNNPACK delegate (ExecuTorch only)."""
    return "-" if ops is None else str(ops)


PARTS = {"accuracy": accuracy_part, "attention": attention_part, "latency": latency_part,
         # the table alone (ViT-Ti/16 at 224): six exports
         "vit_tiny": functools.partial(latency_part, models=("vit_tiny",))}  # fmt: skip


def main() -> None:
    cpu = host_cpu()
    Console(width=200).print(f"CPU: {cpu.name} — {cpu.isa}, INT8 flags: {', '.join(sorted(cpu.flags)) or 'none'}; "
                             f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    run_parts(__doc__.splitlines()[0], PARTS, "build/bench-int8", default_runs=20, default_parts="accuracy,latency")


if __name__ == "__main__":
    main()
