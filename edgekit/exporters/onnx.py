"""ONNX (``.onnx`` + ``.onnx.data``) through torch's dynamo exporter; INT8 through ONNX Runtime's quantizer.

Weights always go to the side file so that every ONNX bundle has the same two-file shape, whatever
the model's size (the format caps a single protobuf at 2 GB).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from edgekit.exporters.base import check_format_environment, require, stage
from edgekit.models.layers import native_layer_norm
from edgekit.models.spec import ModelSpec, SubGraph
from edgekit.types import ExportOptions, GraphSpec, LoweredGraph, QuantizationScheme


@dataclass(frozen=True)
class OrtQuantRecipe:
    """How ONNX Runtime's static QDQ quantizer is driven (``benchmarks/int8_onnx.py`` compares recipes).

    ONNX Runtime's own defaults lost accuracy on ViTs here for two reasons, and the default below fixes both.
    (1) On x86 CPUs without VNNI (this Zen 3) its int8 kernels multiply with VPMADDUBSW, whose int16 pair
    sums saturate when weights use the full int8 range: 7-bit weights (``reduce_range``) took a trained
    vit_digits from logit cosine 0.981 to 0.9995 (per-tensor weights, which rarely reach the range per
    channel, 0.996). (2) It quantizes every tensor between layers too (residual adds, softmax, layer norm,
    reshapes): on an untrained ViT whose logits differ by hundredths that took top-1 agreement to 8%;
    quantizing only the layers with weights, as the PT2E quantizers of the other formats do, gave 100%.
    Calibration method (MinMax / Percentile / Entropy) and symmetric activations moved little.
    """

    calibrate_method: str = "MinMax"  # MinMax, Percentile or Entropy
    activation_symmetric: bool = False
    # op types left in float
    exclude_op_types: tuple[str, ...] = ()
    # quantize only these op types (None: every op type ONNX Runtime can quantize, Add and Softmax included)
    op_types: tuple[str, ...] | None = None
    per_channel: bool = True
    # 7-bit weights, against the int16 saturation of x86 int8 kernels without VNNI
    reduce_range: bool = False

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


DEFAULT_RECIPE = OrtQuantRecipe(reduce_range=True, op_types=("Conv", "Gemm", "MatMul"))


class OnnxExporter:
    format: ClassVar[str] = "onnx"
    extra: ClassVar[str] = "export"

    def __init__(self, recipe: OrtQuantRecipe = DEFAULT_RECIPE):
        self.recipe = recipe

    def check_environment(self) -> None:
        check_format_environment(self.format, self.extra)

    def export(self, spec: ModelSpec, out_dir: Path, options: ExportOptions) -> LoweredGraph:
        self.check_environment()
        before = {p.name for p in out_dir.iterdir()}
        if spec.graphs:  # a file each: ONNX has no methods (a weight both graphs use is stored in both)
            graphs = []
            for g in spec.graphs:
                _export_float(g, out_dir / f"{g.name}.onnx")
                graphs.append(GraphSpec(g.name, f"{g.name}.onnx", g.input_specs, g.output_specs()))
            return LoweredGraph(tuple(graphs), _written(out_dir, before), None)
        filename = "model.onnx"
        graph = GraphSpec("forward", filename, spec.input_specs, spec.output_specs())
        if not options.quantized:
            _export_float(spec, out_dir / filename)
            return LoweredGraph((graph,), _written(out_dir, before), None)
        require("onnxruntime.quantization", "onnxruntime", self.extra, "INT8 quantization for ONNX")
        with tempfile.TemporaryDirectory(prefix="edgekit-onnx-") as tmp:
            float_model = Path(tmp) / filename
            _export_float(spec, float_model)
            quantization = self._quantize(spec, options, float_model, out_dir / filename)
        return LoweredGraph((graph,), _written(out_dir, before), None, quantization)

    def _quantize(self, spec: ModelSpec, options: ExportOptions, source: Path, target: Path) -> QuantizationScheme:
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )

        if options.precision == "int8-dynamic":
            with stage("onnx", "quantizing weights to int8 (ONNX Runtime, dynamic activations)"):
                quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8,
                                 use_external_data_format=True)  # fmt: skip
            return QuantizationScheme(
                tool="onnxruntime.quantization.quantize_dynamic",
                weights="int8 symmetric, per output channel",
                activations="uint8 per tensor, quantized at run time (MatMul / Gemm / Conv inputs)",
            )
        recipe = self.recipe
        excluded = []
        if recipe.exclude_op_types:
            graph = onnx.load(source, load_external_data=False).graph
            excluded = [n.name for n in graph.node if n.op_type in recipe.exclude_op_types]
        with stage("onnx", f"quantizing to int8 (ONNX Runtime static QDQ, {recipe.calibrate_method} calibration)"):
            quantize_static(
                source,
                target,
                _Reader(options.calibration.samples if options.calibration else ()),
                quant_format=QuantFormat.QDQ,
                per_channel=recipe.per_channel,
                reduce_range=recipe.reduce_range,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
                use_external_data_format=True,
                calibrate_method=getattr(CalibrationMethod, recipe.calibrate_method),
                extra_options={"ActivationSymmetric": recipe.activation_symmetric},
            )
        return QuantizationScheme(
            tool="onnxruntime.quantization.quantize_static (QDQ)",
            weights=("7-bit" if recipe.reduce_range else "int8")
            + (" symmetric, per output channel" if recipe.per_channel else " per tensor"),
            activations=f"int8 per tensor ({'symmetric' if recipe.activation_symmetric else 'asymmetric'}), "
            f"{recipe.calibrate_method} ranges from calibration"
            + (f", at {', '.join(recipe.op_types)} only" if recipe.op_types else ""),
            details={"recipe": recipe.to_json(), "nodes_left_float": len(excluded)},
        )


def _export_float(spec: ModelSpec | SubGraph, path: Path) -> None:
    # ONNX Runtime has a fused LayerNormalization kernel: the native op beats the spelled-out form there
    # (TinyViT-5M: 29.4 vs 35.8 ms), while XNNPACK-backed formats want the spelled-out one.
    with stage("onnx", "exporting with torch.onnx (dynamo)"), native_layer_norm():
        program = torch.onnx.export(
            spec.module,
            spec.example_inputs,
            dynamo=True,
            verbose=False,
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
        )
    with stage("onnx", "writing the model and its weights"):
        program.save(str(path), external_data=True)


def _written(out_dir: Path, before: set[str]) -> tuple[str, ...]:
    return tuple(sorted({p.name for p in out_dir.iterdir()} - before))


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over edgekit calibration samples."""

    def __init__(self, samples):
        self._samples = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._samples, None)
