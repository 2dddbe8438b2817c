"""ONNX (``.onnx`` + ``.onnx.data``) through torch's dynamo exporter; INT8 through ONNX Runtime's quantizer.

Weights always go to the side file so that every ONNX bundle has the same two-file shape, whatever
the model's size (the format caps a single protobuf at 2 GB).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from edgekit.exporters.base import check_format_environment, require, stage
from edgekit.exporters.int8_recipes import OrtQuantRecipe, choose_recipe
from edgekit.models.layers import native_layer_norm
from edgekit.models.spec import ModelSpec, SubGraph
from edgekit.types import ExportOptions, GraphSpec, LoweredGraph, QuantizationScheme


class OnnxExporter:
    format: ClassVar[str] = "onnx"
    extra: ClassVar[str] = "export"

    def __init__(self, recipe: OrtQuantRecipe | None = None):
        """``recipe`` fixes the quantizer's settings (benchmarks compare them); None: the INT8 recipe table's
        choice for the export's CPU (``int8_recipes.choose_recipe``)."""
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
        from onnxruntime.quantization import QuantType, quantize_dynamic

        if options.precision == "int8-dynamic":
            with stage("onnx", "quantizing weights to int8 (ONNX Runtime, dynamic activations)"):
                quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8,
                                 use_external_data_format=True)  # fmt: skip
            return QuantizationScheme(
                tool="onnxruntime.quantization.quantize_dynamic",
                weights="int8 symmetric, per output channel",
                activations="uint8 per tensor, quantized at run time (MatMul / Gemm / Conv inputs)",
                calibrated=False,
            )
        chosen = None if self.recipe else choose_recipe(self.format, options.cpu, options.int8_recipe)
        recipe = self.recipe or chosen.settings
        if recipe.activations == "dynamic":
            return self._quantize_per_call(recipe, chosen, options, source, target)
        excluded = []
        if recipe.exclude_op_types:
            graph = onnx.load(source, load_external_data=False).graph
            excluded = [n.name for n in graph.node if n.op_type in recipe.exclude_op_types]
        with stage("onnx", f"quantizing to int8 (ONNX Runtime static QDQ, {recipe.calibrate_method} calibration)"):
            _quantize_static(recipe, options, source, target, excluded, recipe.op_types)
        return QuantizationScheme(
            tool="onnxruntime.quantization.quantize_static (QDQ)",
            weights=("7-bit" if recipe.reduce_range else "int8")
            + (" symmetric, per output channel" if recipe.per_channel else " per tensor"),
            activations=f"{'u' if recipe.activation_type == 'QUInt8' else ''}int8 per tensor "
            f"({'symmetric' if recipe.activation_symmetric else 'asymmetric'}), "
            f"{recipe.calibrate_method} ranges from calibration"
            + (f", at {', '.join(recipe.op_types)} only" if recipe.op_types else ""),
            details={"settings": recipe.to_json(), "nodes_left_float": len(excluded)},
            recipe=chosen.name if chosen else "custom",
            cpu=options.cpu,
        )

    def _quantize_per_call(self, recipe: OrtQuantRecipe, chosen, options: ExportOptions, source: Path,
                           target: Path) -> QuantizationScheme:  # fmt: skip
        """int8 weights, activations quantized when each GEMM runs; ``static_op_types`` (convolutions) first
        as static QDQ, since ORT's per-call ConvInteger is slower than float."""
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        present = {n.op_type for n in onnx.load(source, load_external_data=False).graph.node}
        static = tuple(op for op in recipe.static_op_types if op in present)
        with tempfile.TemporaryDirectory(prefix="edgekit-onnx-q-") as tmp:
            if static:
                with stage("onnx", f"quantizing {', '.join(static)} to int8 (static QDQ, calibrated)"):
                    staged = Path(tmp) / source.name
                    _quantize_static(recipe, options, source, staged, [], static)
                    source = staged
            with stage("onnx", "quantizing to int8 (ONNX Runtime, activations quantized per call)"):
                quantize_dynamic(source, target, per_channel=recipe.per_channel, weight_type=QuantType.QInt8,
                                 op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
                                 use_external_data_format=True)  # fmt: skip
        weights = "int8 symmetric" + (", per output channel" if recipe.per_channel else ", per tensor")
        activations = "uint8 per tensor, quantized at run time" + (
            f" at {', '.join(recipe.op_types)}" if recipe.op_types else ""
        )
        if static:
            activations += f"; {', '.join(static)} static ({recipe.calibrate_method} ranges from calibration)"
        return QuantizationScheme(
            tool="onnxruntime.quantization.quantize_dynamic" + (" + quantize_static (QDQ)" if static else ""),
            weights=weights,
            activations=activations,
            details={"settings": recipe.to_json()},
            recipe=chosen.name if chosen else "custom",
            cpu=options.cpu,
            calibrated=bool(static),
        )


def _quantize_static(recipe: OrtQuantRecipe, options: ExportOptions, source: Path, target: Path,
                     excluded: list[str], op_types: tuple[str, ...] | None) -> None:  # fmt: skip
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        source,
        target,
        _Reader(options.calibration.samples if options.calibration else ()),
        quant_format=QuantFormat.QDQ,
        per_channel=recipe.per_channel,
        reduce_range=recipe.reduce_range,
        activation_type=getattr(QuantType, recipe.activation_type),
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        op_types_to_quantize=list(op_types) if op_types else None,
        use_external_data_format=True,
        calibrate_method=getattr(CalibrationMethod, recipe.calibrate_method),
        extra_options={
            "ActivationSymmetric": recipe.activation_symmetric,
            "MatMulConstBOnly": recipe.matmul_const_b_only,
        },  # fmt: skip
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
