"""The table of export formats: one row per format, read by exporters, runtimes and the CLI.

It names modules as strings so that reading the table imports neither torch nor any runtime.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from edgekit.registry import Registry


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    description: str
    exporter: str  # "module:Class" of the Exporter
    runtime: str  # "module:Class" of the Runtime
    runtime_extra: str  # pip extra that installs the runtime alone
    delegates: tuple[str | None, ...]  # allowed --delegate values; the first is the default
    # (module, pip package) pairs the exporter needs; its check_environment() and `edgekit doctor` read them.
    export_requires: tuple[tuple[str, str], ...] = ()
    purpose: str = ""  # what the exporter is for, in a MissingDependencyError

    def can_export(self) -> bool:
        """Whether every toolchain module is on the path, without importing any of them."""
        import importlib.util

        return all(importlib.util.find_spec(module.partition(".")[0]) is not None for module, _ in self.export_requires)

    def exporter_class(self) -> type:
        return _resolve(self.exporter)

    def runtime_class(self) -> type:
        return _resolve(self.runtime)


FORMATS: Registry[Format] = Registry("format")

for _fmt in (
    Format(
        "pte",
        ".pte",
        "ExecuTorch program",
        "edgekit.exporters.executorch:ExecuTorchExporter",
        "edgekit.runtimes.executorch:ExecuTorchRuntime",
        "executorch",
        ("xnnpack", "portable"),
        (("torch", "torch"), ("executorch.exir", "executorch")),
        "exporting to ExecuTorch (.pte)",
    ),
    Format(
        "tflite",
        ".tflite",
        "LiteRT (TFLite) flatbuffer",
        "edgekit.exporters.tflite:TFLiteExporter",
        "edgekit.runtimes.litert:LiteRTRuntime",
        "tflite",
        (None,),
        (("torch", "torch"), ("litert_torch", "litert-torch")),
        "exporting to TFLite (.tflite)",
    ),
    Format(
        "onnx",
        ".onnx",
        "ONNX graph (dynamo exporter)",
        "edgekit.exporters.onnx:OnnxExporter",
        "edgekit.runtimes.onnxruntime:OnnxRuntime",
        "onnx",
        (None,),
        (("torch", "torch"), ("onnxscript", "onnxscript"), ("onnx", "onnx")),
        "exporting to ONNX (.onnx)",
    ),
):
    FORMATS.add(_fmt.name, _fmt)


def get_format(name: str) -> Format:
    return FORMATS.get(name)


def format_for_suffix(filename: str) -> Format | None:
    for _, fmt in FORMATS.items():
        if filename.endswith(fmt.suffix):
            return fmt
    return None


def _resolve(ref: str) -> type:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
