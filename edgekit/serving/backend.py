"""The plug-in point behind the endpoint: a model backend answers metadata, readiness and inference.

Two implementations: ``bundle_backend.BundleBackend`` (one bundle run in this process by its runtime) and
``plan_backend.PlanBackend`` (a split plan fanned out to its workers and fused). The service checks every
request against ``metadata`` before a backend sees it, so a backend receives inputs of the right names,
shapes and dtypes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgekit.serving.tensors import Parameter
from edgekit.types import TensorSpec


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: str  # the first 12 hex digits of what pins the model's bytes (bundle manifest, plan.json)
    platform: str  # edgekit_onnx, edgekit_tflite, edgekit_pte, edgekit_split
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class BackendAnswer:
    outputs: Mapping[str, np.ndarray]
    parameters: Mapping[str, Parameter] = field(default_factory=dict)


class ModelBackend(Protocol):
    metadata: ModelMetadata

    def ready(self) -> bool:
        """Whether an inference sent now can be answered (for a plan: every worker healthy, its shard held)."""
        ...

    def infer(self, inputs: Mapping[str, np.ndarray]) -> BackendAnswer:
        """Outputs by name for inputs already checked against ``metadata``; EdgekitError when it cannot."""
        ...

    def close(self) -> None: ...
