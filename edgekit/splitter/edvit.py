"""Split planning: ``plan_split`` and the table of strategies it dispatches to.

What every strategy needs is done here, once: the strategy resolved (an unknown name fails before any work),
the model built and checked by the strategy, the full model trained unless weights are given, a staging
directory for the plan's files, ``plan.json`` written there and the directory moved into place. How the trained
model becomes shards is the strategy's (:class:`~edgekit.splitter.strategy.SplitStrategy`): ``edvit``, the
class-wise split of the ED-ViT paper (``classwise.py``), is the first row; ``pipeline`` (contiguous blocks per
device, ``pipeline.py``) the second; ``auto`` (``auto.py``) picks one of them from their estimates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgekit.data import load_dataset
from edgekit.models.spec import ModelSpec
from edgekit.registry import Registry
from edgekit.splitter.auto import AutoStrategy
from edgekit.splitter.classwise import ClasswiseStrategy
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.pipeline import PipelineStrategy
from edgekit.splitter.plan import PLAN_NAME, SplitPlan, load_plan, save_plan
from edgekit.splitter.strategy import SplitJob, SplitSettings, SplitStrategy
from edgekit.staging import StagedDirectory

__all__ = ["STRATEGIES", "SplitSettings", "plan_split"]

log = logging.getLogger(__name__)

STRATEGIES: Registry[SplitStrategy] = Registry("split strategy")
for _strategy in (ClasswiseStrategy(), PipelineStrategy(), AutoStrategy()):
    STRATEGIES.add(_strategy.name, _strategy)


def plan_split(
    model: str | ModelSpec,
    devices: Sequence[DeviceSpec],
    out_dir: str | Path,
    weights: str | Path | None = None,
    data: str = "digits",
    config: dict[str, Any] | None = None,
    settings: SplitSettings | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> SplitPlan:
    """Build, export and write a split plan for ``model`` over ``devices`` into ``out_dir``."""
    from edgekit.models import prepare_model
    from edgekit.training import evaluate_module, train_classifier

    settings = settings or SplitSettings()
    strategy = STRATEGIES.get(settings.strategy)
    notify = on_stage or (lambda _m: None)
    root = Path(out_dir)
    stage = StagedDirectory(root, PLAN_NAME, "a split plan")  # refuses a directory that is not a plan at once
    clock = time.perf_counter()

    notify("building the model")
    spec = prepare_model(model, weights, **(config or {}))
    # Everything that can be refused is refused before minutes of training.
    strategy.check(spec, devices, settings)
    split = load_dataset(data, tuple(spec.example_inputs[0].shape))
    if weights is None:
        notify(f"training {spec.name} on {data} ({settings.epochs} epochs)")
        train_classifier(spec, data, epochs=settings.epochs, seed=settings.seed)
    spec.module.eval()
    full_accuracy = evaluate_module(spec, split)

    with stage:
        job = SplitJob(spec, data, split, full_accuracy, tuple(devices), settings, stage.path, notify,
                       time.perf_counter() - clock)  # fmt: skip
        plan = strategy.plan(job)
        save_plan(plan, stage.path)
        stage.commit()
    log.info("%s split plan written to %s (%d shards; full model %.2f%%)", strategy.name, root, len(plan.shards),
             100 * full_accuracy)  # fmt: skip
    return load_plan(root)
