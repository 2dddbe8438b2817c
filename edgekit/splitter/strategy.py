"""The contract between :func:`edgekit.splitter.edvit.plan_split` and a split strategy.

``plan_split`` does what every strategy needs (the model built and trained, the dataset, a staging directory,
``plan.json`` written and moved into place); a strategy decides how the trained model becomes shards on the
devices. A new way of splitting (a layer pipeline: contiguous blocks per device, activations passed on) is a
new row of ``STRATEGIES``, not a branch in the planner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgekit.data import Split
from edgekit.models.spec import ModelSpec
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.plan import SplitPlan


@dataclass(frozen=True)
class SplitSettings:
    strategy: str = "edvit"
    partition: str = "balanced"
    epochs: int = 30  # full model, when no weights are given
    # The split demo over seeds 0-4 (benchmarks/split_seeds.py): 24 lost up to 1.11 points, 40 stayed within 1.
    finetune_epochs: int = 40
    fusion_epochs: int = 60
    fusion_hidden: int = 128
    shard_dropout: float = 0.15
    keep_ratio: float | None = None  # each shard's parameters at most this fraction of the full model's; None: 1/N
    latency_ms: float | None = None  # each shard's FLOPs within this many ms at its device's GFLOP/s; None: no limit
    distill_weight: float = 0.7
    temperature: float = 2.0
    lr: float = 2e-3
    seed: int = 0
    samples: int = 8  # export validation inputs
    replicas: int = 1  # devices per shard, the primary included (replicas run the same bundle)


@dataclass(frozen=True)
class SplitJob:
    """What a strategy plans from: the full model (trained, in eval mode) and its data, the devices, the
    settings, and the staging directory the plan's files go to (shard bundles under ``shards/``)."""

    spec: ModelSpec
    data: str  # the dataset's name, for the report
    split: Split
    full_accuracy: float  # held-out
    devices: tuple[DeviceSpec, ...]
    settings: SplitSettings
    staging: Path
    notify: Callable[[str], None]
    train_seconds: float  # building and training the full model


class SplitStrategy(Protocol):
    """A way of splitting a model over devices: one row of ``STRATEGIES``."""

    name: str
    description: str  # one line, for errors and help

    def check(self, spec: ModelSpec, devices: Sequence[DeviceSpec], settings: SplitSettings) -> None:
        """Refuse a model, device list or setting this strategy cannot plan, before the full model trains."""

    def plan(self, job: SplitJob) -> SplitPlan:
        """Build and export the shards into ``job.staging``; the plan of them (``plan_split`` writes it)."""
