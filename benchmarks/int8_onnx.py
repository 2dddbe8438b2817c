"""Why ONNX Runtime's static INT8 loses accuracy on attention models, and which recipe fixes it.

A trained vit_digits (held-out digits: accuracy, top-1 agreement and logit cosine against FP32) and an
untrained tiny ViT on random inputs (agreement and cosine only) are quantized with each recipe: the
calibration method, symmetric vs asymmetric activations, and one op type at a time left in float (which
ops the error comes from). Every row is a real quantize_static + ONNX Runtime run.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from edgekit._native import quiet_toolchain_logs
from edgekit.calibration import load_calibration
from edgekit.cpu import host_cpu
from edgekit.data import load_dataset
from edgekit.exporters.int8_recipes import OrtQuantRecipe, choose_recipe
from edgekit.exporters.onnx import OnnxExporter
from edgekit.exporters.pipeline import resolve_options
from edgekit.inputs import make_inputs
from edgekit.models import prepare_model
from edgekit.runtimes.onnxruntime import OnnxRuntime
from edgekit.training import save_weights, train_classifier
from edgekit.validate import cosine

RECIPES: dict[str, OrtQuantRecipe] = {
    "MinMax, asymmetric (ORT default)": OrtQuantRecipe(),
    "MinMax, symmetric": OrtQuantRecipe(activation_symmetric=True),
    "Percentile, asymmetric": OrtQuantRecipe(calibrate_method="Percentile"),
    "Entropy, asymmetric": OrtQuantRecipe(calibrate_method="Entropy"),
    **{
        f"{op} in float": OrtQuantRecipe(exclude_op_types=(op,))
        for op in ("MatMul", "Softmax", "LayerNormalization", "Gelu", "Add", "Gemm", "Conv")
    },
    # what the PT2E quantizers annotate: layers with weights; the activations between them stay float
    "only Conv / Gemm / MatMul": OrtQuantRecipe(op_types=("Conv", "Gemm", "MatMul")),
    "per-tensor weights": OrtQuantRecipe(per_channel=False),
    "7-bit weights (reduce_range)": OrtQuantRecipe(reduce_range=True),
    "7-bit weights, symmetric": OrtQuantRecipe(reduce_range=True, activation_symmetric=True),
    "7-bit weights, only Conv / Gemm / MatMul": OrtQuantRecipe(reduce_range=True, op_types=("Conv", "Gemm", "MatMul")),
}
TINY_VIT = {"img_size": 32, "patch_size": 8, "dim": 32, "depth": 2, "heads": 2, "num_classes": 10}


def _run(spec, recipe: OrtQuantRecipe, options, inputs: list[dict]) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        lowered = OnnxExporter(recipe).export(spec, Path(tmp), options)
        runtime = OnnxRuntime(Path(tmp) / lowered.spec.file, lowered.spec)
        return np.concatenate([runtime.run(sample)[spec.output_names[0]] for sample in inputs])


def study(spec, inputs, labels, calib_samples: int, console: Console, title: str) -> Table:
    options = resolve_options(format="onnx", precision="int8")
    options = replace(options, calibration=load_calibration(spec.input_specs, None, spec.dataset, calib_samples))
    with torch.no_grad():
        reference = np.concatenate([spec.module(torch.from_numpy(s[spec.input_names[0]])).numpy() for s in inputs])
    table = Table(title=title)
    for col in ("recipe", "accuracy", "top-1 agreement", "logit cosine", "max abs err"):
        table.add_column(col, justify="right" if col != "recipe" else "left")
    if labels is not None:
        table.add_row("FP32 reference", f"{np.mean(reference.argmax(-1) == labels):.2%}", "-", "-", "-")
    for name, recipe in RECIPES.items():
        console.log(f"{title}: {name}")
        got = _run(spec, recipe, options, inputs)
        accuracy = f"{np.mean(got.argmax(-1) == labels):.2%}" if labels is not None else "-"
        marker = " (edgekit's choice for this CPU)" if recipe == choose_recipe("onnx", host_cpu()).settings else ""
        table.add_row(
            name + marker, accuracy, f"{np.mean(got.argmax(-1) == reference.argmax(-1)):.1%}",
            f"{cosine(reference, got):.4f}", f"{np.abs(reference - got).max():.3g}",
        )  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="trained vit_digits weights (default: train 30 epochs)")
    parser.add_argument("--out", default="build/bench-int8-onnx")
    parser.add_argument("--calib-samples", type=int, default=128)
    args = parser.parse_args()
    quiet_toolchain_logs()
    console = Console(width=200)
    weights = args.weights
    if weights is None:
        spec = prepare_model("vit_digits")
        with console.status("training vit_digits (30 epochs)"):
            result = train_classifier(spec, "digits", epochs=30)
        extra = {"dataset": "digits", "test_accuracy": result.test_accuracy}
        weights = save_weights(Path(args.out) / "vit_digits.pt", spec, extra)
    spec = prepare_model("vit_digits", weights)
    split = load_dataset("digits", spec.input_specs[0].shape)
    inputs = [{"image": x[None]} for x in split.x_test]
    console.print(study(spec, inputs, split.y_test, args.calib_samples, console,
                        "trained vit_digits (dim 64, depth 4), 359 held-out digits"))  # fmt: skip
    tiny = prepare_model("vit_tiny", **TINY_VIT)
    console.print(study(tiny, make_inputs(tiny.input_specs, 64, seed=0), None, args.calib_samples, console,
                        "untrained tiny ViT, 64 random inputs"))  # fmt: skip


if __name__ == "__main__":
    main()
