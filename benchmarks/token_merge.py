"""Token merging per format and rate: latency, speed-up over r = 0 in the same run, FLOPs, accuracy, agreement.

1. digits  — a ViT trained on scikit-learn's digits (8x8 images, 1x1 patches: 64 tokens + the class token,
             4 blocks of width 64); one multi-rate bundle per format; held-out accuracy of every rate's graph
             with its runtime, top-1 agreement with the r = 0 graph, latency. ``digits_torch``: the same
             model's accuracy per rate in PyTorch, every even rate, no export.
2. vit224  — vit_tiny at 224 (random weights: latency, FLOPs, agreement on random inputs; no accuracy);
             one bundle per format with every rate. ``vit224_pte`` / ``vit224_tflite`` / ``vit224_onnx`` only
             export (to run the slow exports in parallel); ``vit224`` reuses finished bundles.

Latency is the median of ``rounds`` interleaved rounds (every rate of a format once per round, ``runs`` runs
each), so drift on a shared machine hits every rate alike; the speed-up is r = 0's median over the rate's.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
from parts import run_parts
from rich.console import Console
from rich.table import Table

from edgekit import runtimes
from edgekit.bundle import read_bundle
from edgekit.data import load_dataset
from edgekit.exporters.pipeline import export
from edgekit.inputs import make_inputs
from edgekit.models import prepare_model
from edgekit.profiling.latency import measure
from edgekit.runtimes.budget import cpu_model
from edgekit.training import save_weights, train_classifier

FORMATS = ("pte", "tflite", "onnx")
DIGITS = {"patch_size": 1}  # vit_digits with one token per pixel
DIGIT_RATES = (0, 4, 8, 12)
RATES_224 = (0, 8, 15)
EPOCHS = 30


def finished(path: Path, rates: tuple[int, ...]):
    """The manifest of a verified bundle at ``path`` with exactly ``rates``, else None."""
    if not (path / "edgekit.json").exists():
        return None
    manifest = read_bundle(path).manifest
    layout = manifest.extras.token_merge
    return manifest if manifest.passed and layout and tuple(r.r for r in layout.rates) == tuple(rates) else None


def bundle(name: str, out: Path, console: Console, **kwargs):
    """A finished bundle at ``out / name`` (reused when its rates match), else a fresh export."""
    path = out / name
    manifest = finished(path, kwargs["token_merge"])
    if manifest is not None:
        return path, manifest
    console.log(f"exporting {name}")
    result = export(out_dir=path, samples=2, **kwargs)
    return Path(result.bundle_dir), result.manifest


def timed(paths: dict, rounds: int, runs: int) -> dict:
    """Median latency per (format, graph) over interleaved rounds."""
    loaded = {key: runtimes.load(path, graph=key[1]) for key, path in paths.items()}
    feeds = {key: make_inputs(rt.input_specs, 1, seed=0)[0] for key, rt in loaded.items()}
    samples: dict = {key: [] for key in loaded}
    for _ in range(rounds):
        for key, rt in loaded.items():
            samples[key].append(measure(lambda rt=rt, f=feeds[key]: rt.run(f), runs=runs, warmup=2).median)
    for rt in loaded.values():
        rt.close()
    return {key: statistics.median(v) for key, v in samples.items()}


def predictions(path: Path, graph: str, inputs: list[np.ndarray]) -> np.ndarray:
    with runtimes.load(path, graph=graph) as rt:
        name = rt.input_specs[0].name
        return np.array([int(next(iter(rt.run({name: x}).values())).argmax()) for x in inputs])


def train(out: Path, console: Console) -> Path:
    path = out / "vit_digits-p1.pt"
    if path.exists():
        return path
    spec = prepare_model("vit_digits", **DIGITS)
    with console.status("training vit_digits (1x1 patches)"):
        result = train_classifier(spec, "digits", epochs=EPOCHS)
    console.log(f"vit_digits (1x1 patches): {result.test_accuracy:.2%} after {EPOCHS} epochs")
    return save_weights(path, spec, {"dataset": "digits", "test_accuracy": result.test_accuracy})


def _rows(manifests: dict, latency: dict, agreement: dict, accuracy: dict | None, rows: list, title: str) -> Table:
    table = Table(title=title)
    columns = ["format", "r", "last MLP tokens", "MFLOPs", "ms", "speed-up"]
    columns += ["accuracy", "vs r=0 (pts)"] if accuracy else []
    for c in [*columns, "top-1 = r=0"]:
        table.add_column(c, justify="left" if c == "format" else "right")
    for fmt, manifest in manifests.items():
        layout = manifest.extras.token_merge
        base = latency[fmt, layout.rates[0].graph]
        for rate in layout.rates:
            ms = latency[fmt, rate.graph]
            row = {"format": fmt, "r": rate.r, "mlp_tokens_last": rate.mlp_tokens[-1],
                   "flops": manifest.graph(rate.graph).flops, "ms": ms, "speedup": base / ms,
                   "top1_agreement": agreement[fmt, rate.graph]}  # fmt: skip
            cells = [fmt, str(rate.r), str(rate.mlp_tokens[-1]), f"{row['flops'] / 1e6:.1f}", f"{ms:.3f}",
                     f"{base / ms:.2f}x"]  # fmt: skip
            if accuracy:
                acc, acc0 = accuracy[fmt, rate.graph], accuracy[fmt, layout.rates[0].graph]
                row.update(accuracy=acc, torch_accuracy=rate.accuracy, drop_points=100 * (acc0 - acc))
                cells += [f"{acc:.2%}", f"{100 * (acc - acc0):+.2f}"]
            cells.append(f"{agreement[fmt, rate.graph]:.1%}")
            table.add_row(*cells)
            rows.append(row)
    return table


def digits_part(out: Path, rounds: int, runs: int, console: Console, rows: list) -> Table:
    weights = train(out, console)
    manifests, paths = {}, {}
    for fmt in FORMATS:
        path, manifests[fmt] = bundle(f"digits-{fmt}", out, console, model="vit_digits", format=fmt,
                                      weights=weights, config=DIGITS, token_merge=DIGIT_RATES)  # fmt: skip
        paths.update({(fmt, r.graph): path for r in manifests[fmt].extras.token_merge.rates})
    shape = tuple(manifests["pte"].graphs[0].inputs[0].shape)
    split = load_dataset("digits", shape)
    images = [split.x_test[i : i + 1] for i in range(len(split.x_test))]
    accuracy, agreement = {}, {}
    for (fmt, graph), path in paths.items():
        accuracy[fmt, graph] = float(np.mean(predictions(path, graph, images) == split.y_test))
        agreement[fmt, graph] = float(np.mean(predictions(path, graph, images) == predictions(path, "r0", images)))
    latency = timed(paths, rounds, runs)
    title = (f"vit_digits 1x1 patches (65 tokens, 4 blocks), trained; {len(images)} held-out digits; "
             f"median of {rounds} rounds x {runs} runs; {cpu_model()}")  # fmt: skip
    return _rows(manifests, latency, agreement, accuracy, rows, title)


def digits_torch_part(out: Path, rounds: int, runs: int, console: Console, rows: list) -> Table:
    """The trained model's accuracy and agreement per rate in PyTorch, without exporting (each format's graph
    is verified against exactly these modules when it is exported)."""
    import torch

    from edgekit.models.token_merge import max_rate
    from edgekit.models.token_merge_models import merging_module

    spec = prepare_model("vit_digits", train(out, console), **DIGITS)
    split = load_dataset("digits", tuple(spec.example_inputs[0].shape))
    x = torch.from_numpy(split.x_test)
    table = Table(title=f"vit_digits 1x1 patches, trained, PyTorch eager; {len(x)} held-out digits")
    for c in ("r", "last MLP tokens", "MFLOPs", "FLOPs saved", "accuracy", "vs r=0 (pts)", "top-1 = r=0"):
        table.add_column(c, justify="right")
    base = None
    for r in range(0, max_rate(65, 4, 1, True) + 1, 2):
        module = merging_module(spec, r)
        with torch.no_grad():
            predicted = module(x).argmax(-1).numpy()
        flops = replace_module(spec, module).flops()
        if base is None:
            base = (predicted, flops)
        accuracy = float(np.mean(predicted == split.y_test))
        acc0 = float(np.mean(base[0] == split.y_test))
        agreement = float(np.mean(predicted == base[0]))
        rows.append({"r": r, "flops": flops, "accuracy": accuracy, "top1_agreement": agreement,
                     "mlp_tokens_last": module.mlp_tokens[-1]})  # fmt: skip
        table.add_row(str(r), str(module.mlp_tokens[-1]), f"{flops / 1e6:.2f}", f"{base[1] / flops:.2f}x",
                      f"{accuracy:.2%}", f"{100 * (accuracy - acc0):+.2f}", f"{agreement:.1%}")  # fmt: skip
    return table


def replace_module(spec, module):
    from dataclasses import replace

    return replace(spec, module=module)


def _export_224(fmt: str, out: Path, console: Console):
    return bundle(f"vit_tiny224-{fmt}", out, console, model="vit_tiny", format=fmt, token_merge=RATES_224)


def vit224_part(out: Path, rounds: int, runs: int, console: Console, rows: list) -> Table:
    manifests, paths = {}, {}
    for fmt in FORMATS:  # the exports run as parts of their own (slow, and parallel on a multi-core machine)
        path = out / f"vit_tiny224-{fmt}"
        manifest = finished(path, RATES_224)
        if manifest is None:
            console.log(f"[yellow]no finished {fmt} bundle at {path}: run --parts vit224_{fmt} first[/yellow]")
            continue
        manifests[fmt] = manifest
        paths.update({(fmt, r.graph): path for r in manifest.extras.token_merge.rates})
    inputs = [s["image"] for s in make_inputs(next(iter(manifests.values())).graphs[0].inputs, 16, seed=1)]
    agreement = {}
    for (fmt, graph), path in paths.items():
        agreement[fmt, graph] = float(np.mean(predictions(path, graph, inputs) == predictions(path, "r0", inputs)))
    latency = timed(paths, rounds, runs)
    title = (f"vit_tiny at 224 (random weights; agreement on 16 random inputs); median of {rounds} rounds x "
             f"{runs} runs; {cpu_model()}")  # fmt: skip
    return _rows(manifests, latency, agreement, None, rows, title)


def _export_only(fmt: str):
    def part(out: Path, rounds: int, runs: int, console: Console, rows: list) -> str:
        path, manifest = _export_224(fmt, out, console)
        return f"{path}: {manifest.validation.summary()}; undelegated {manifest.export.undelegated_ops}"

    return part


if __name__ == "__main__":
    run_parts(
        __doc__.split("\n")[0],
        {
            "digits": digits_part,
            "digits_torch": digits_torch_part,
            "vit224": vit224_part,
            **{f"vit224_{f}": _export_only(f) for f in FORMATS},
        },  # fmt: skip
        "build/bench-token-merge",
        20,
    )
