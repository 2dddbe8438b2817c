"""LiteRT / TFLite (``.tflite``) through litert-torch's converter."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from edgekit.exporters.base import require, stage
from edgekit.models.spec import ModelSpec
from edgekit.types import ExportOptions, GraphSpec, LoweredGraph

# litert-torch names the single signature it writes
SIGNATURE = "serving_default"


class TFLiteExporter:
    format: ClassVar[str] = "tflite"
    extra: ClassVar[str] = "export"

    def check_environment(self) -> None:
        require("litert_torch", "litert-torch", self.extra, "exporting to TFLite (.tflite)")

    def export(self, spec: ModelSpec, out_dir: Path, options: ExportOptions) -> LoweredGraph:
        self.check_environment()
        import litert_torch

        filename = "model.tflite"
        with stage("tflite", "converting with litert-torch"):
            converted = litert_torch.convert(spec.module, spec.example_inputs)
        with stage("tflite", "writing the flatbuffer"):
            converted.export(str(out_dir / filename))
        graph = GraphSpec("forward", filename, spec.input_specs, spec.output_specs(), entry=SIGNATURE)
        return LoweredGraph(graph, (filename,), None)
