"""edgekit: export PyTorch models to ExecuTorch, LiteRT and ONNX, verify, run, profile and split them.

``import edgekit`` needs only numpy: the names below that need torch (export, create_model ...)
are imported on first use, so a device with just a runtime can ``edgekit.load`` bundles.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgekit.errors import (
    BundleError,
    EdgekitError,
    ExportFailed,
    InputError,
    MissingDependencyError,
    UnknownNameError,
    UnsupportedOptionError,
    ValidationFailed,
    WorkerError,
)
from edgekit.runtimes import load
from edgekit.toolchain import edgekit_version

__version__ = edgekit_version()

# public name -> "module:attribute", imported lazily because these modules import torch
_LAZY = {
    "export": "edgekit.exporters.pipeline:export",
    "create_model": "edgekit.models:create_model",
    "list_models": "edgekit.models:list_models",
    "register_model": "edgekit.models:register_model",
    "ModelSpec": "edgekit.models:ModelSpec",
    "plan_split": "edgekit.splitter.edvit:plan_split",
    "SplitCoordinator": "edgekit.splitter.coordinator:SplitCoordinator",
    "load_plan": "edgekit.splitter.plan:load_plan",
    "StreamSession": "edgekit.streaming:StreamSession",  # numpy only, lazy to keep `import edgekit` light
}

__all__ = [
    "BundleError",
    "EdgekitError",
    "ExportFailed",
    "InputError",
    "MissingDependencyError",
    "UnknownNameError",
    "UnsupportedOptionError",
    "ValidationFailed",
    "WorkerError",
    "load",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
    module, _, attr = _LAZY[name].partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
