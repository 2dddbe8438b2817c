"""Split a ViT across devices (ED-ViT) and run it over gRPC workers.

Planning (``plan_split``) needs torch; running a plan (``SplitCoordinator``, ``start_worker``) needs
only numpy, a runtime and grpcio, so workers and coordinators run on the runtime install.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgekit.splitter.coordinator import SplitCoordinator, SplitEvaluation, SplitOutput, parse_workers
from edgekit.splitter.devices import DeviceSpec, load_devices
from edgekit.splitter.plan import ShardPlan, SplitPlan, load_plan, save_plan
from edgekit.splitter.worker import start_worker

_LAZY = {"plan_split": "edgekit.splitter.edvit:plan_split", "SplitSettings": "edgekit.splitter.edvit:SplitSettings"}

__all__ = [
    "DeviceSpec",
    "ShardPlan",
    "SplitCoordinator",
    "SplitEvaluation",
    "SplitOutput",
    "SplitPlan",
    "load_devices",
    "load_plan",
    "parse_workers",
    "save_plan",
    "start_worker",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'edgekit.splitter' has no attribute {name!r}")
    module, _, attr = _LAZY[name].partition(":")
    return getattr(importlib.import_module(module), attr)
