"""LiteRT / TFLite (``.tflite``) through litert-torch's converter."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from edgekit.exporters.base import check_format_environment, stage
from edgekit.models.spec import ModelSpec
from edgekit.types import ExportOptions, GraphSpec, LoweredGraph, QuantizationScheme

# litert-torch names the single signature it writes
SIGNATURE = "serving_default"


class TFLiteExporter:
    format: ClassVar[str] = "tflite"
    extra: ClassVar[str] = "export"

    def check_environment(self) -> None:
        check_format_environment(self.format, self.extra)

    def export(self, spec: ModelSpec, out_dir: Path, options: ExportOptions) -> LoweredGraph:
        self.check_environment()
        import litert_torch

        filename = "model.tflite"
        if spec.graphs:
            return self._export_signatures(spec, out_dir / filename)
        module, kwargs, quantization = spec.module, {}, None
        if options.quantized:
            module, kwargs, quantization = self._quantize(spec, options)
        with stage("tflite", "converting with litert-torch"):
            converted = litert_torch.convert(module, spec.example_inputs, **kwargs)
        with stage("tflite", "writing the flatbuffer"):
            converted.export(str(out_dir / filename))
        graph = GraphSpec("forward", filename, spec.input_specs, spec.output_specs(), entry=SIGNATURE)
        return LoweredGraph((graph,), (filename,), None, quantization)

    @staticmethod
    def _export_signatures(spec: ModelSpec, path: Path) -> LoweredGraph:
        """Every SubGraph as a signature of one flatbuffer (weights the graphs share are stored once)."""
        import litert_torch

        with stage("tflite", f"converting {len(spec.graphs)} signatures with litert-torch"):
            builder = litert_torch
            for g in spec.graphs:
                builder = builder.signature(g.name, g.module, g.example_inputs)
            converted = builder.convert()
        with stage("tflite", "writing the flatbuffer"):
            converted.export(str(path))
        graphs = tuple(GraphSpec(g.name, path.name, g.input_specs, g.output_specs(), entry=g.name) for g in spec.graphs)
        return LoweredGraph(graphs, (path.name,), None, None)

    @staticmethod
    def _quantize(spec: ModelSpec, options: ExportOptions) -> tuple[object, dict, QuantizationScheme]:
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig

        from edgekit.exporters.int8_recipes import pt2e_recipe_for
        from edgekit.transforms.quantize import configure_quantizer, pt2e_quantize, pt2e_scheme, qualified_name

        recipe, settings = pt2e_recipe_for("tflite", options)
        config = get_symmetric_quantization_config(**settings)
        if recipe is None:  # int8-dynamic: every linear / conv, as before
            quantizer = PT2EQuantizer().set_global(config)
        else:
            quantizer = configure_quantizer(PT2EQuantizer(), config, recipe.settings, spec.module, qualified_name)
        label = recipe.name if recipe else "dynamic"
        # static INT8 files get int8 inputs and outputs; LiteRTRuntime converts at the boundary
        with stage("tflite", f"quantizing to {options.precision} (PT2E, litert-torch PT2EQuantizer, {label})"):
            # litert-torch folds the quantize ops itself during conversion
            module = pt2e_quantize(spec, quantizer, options.calibration, fold_quantize=False)
        description = pt2e_scheme("torchao PT2E + litert-torch PT2EQuantizer", settings, recipe, options.cpu)
        # QuantConfig reads only static vs dynamic from its quantizer's global config, which a recipe that
        # quantizes chosen module types leaves unset: it gets one with the same config set globally
        mode = PT2EQuantizer().set_global(config)
        return module, {"quant_config": QuantConfig(pt2e_quantizer=mode)}, description
