"""Versions of the packages edgekit works with, read from package metadata without importing them."""

from __future__ import annotations

from importlib import metadata

# distribution name -> what edgekit uses it for
PACKAGES: dict[str, str] = {
    "torch": "models, reference outputs, every exporter",
    "executorch": "pte export and runtime",
    "litert-torch": "tflite export",
    "ai-edge-litert": "tflite runtime (LiteRT)",
    "tflite-runtime": "tflite runtime (legacy, numpy<2 devices)",
    "onnx": "onnx export",
    "onnxscript": "onnx export (dynamo)",
    "onnxruntime": "onnx runtime",
    "numpy": "every runtime",
    "scikit-learn": "the digits dataset (train / eval)",
    "grpcio": "split inference (edgekit worker, infer-split)",
}


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions(names: list[str] | None = None) -> dict[str, str | None]:
    return {name: package_version(name) for name in (names or list(PACKAGES))}


def edgekit_version() -> str:
    return package_version("edgekit-sdk") or "0+unknown"
