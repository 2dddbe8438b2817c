"""The strategy table, and class-wise plans at the two ends: one device (every class) and one class per device."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgekit.errors import UnknownNameError
from edgekit.splitter.classwise import build_submodels, fuse
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.distill import OTHER_FLOOR, subset_head
from edgekit.splitter.edvit import STRATEGIES, SplitSettings, plan_split
from edgekit.splitter.strategy import SplitJob
from tests.splitter.conftest import TINY_SPLIT_CONFIG

# as the session plan in conftest.py: a few epochs, one distillation epoch
SETTINGS = SplitSettings(epochs=4, finetune_epochs=1, fusion_epochs=15, samples=4)
CLASSES = 10  # digits


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny digits ViT trained once for this module and its weights file; the split the plans are built from
    (a third of the training images: ten sub-models distil in seconds; every held-out image) and its .npz."""
    from dataclasses import replace

    from edgekit.data import load_dataset
    from edgekit.models import prepare_model
    from edgekit.training import evaluate_module, save_weights, train_classifier

    spec = prepare_model("vit_digits", **TINY_SPLIT_CONFIG)
    train_classifier(spec, "digits", epochs=SETTINGS.epochs, seed=SETTINGS.seed)
    spec.module.eval()
    full = load_dataset("digits", tuple(spec.example_inputs[0].shape))
    split = replace(full, x_train=full.x_train[::3], y_train=full.y_train[::3])
    root = tmp_path_factory.mktemp("trained")
    data = root / "digits-third.npz"
    np.savez(data, x_train=split.x_train, y_train=split.y_train, x_test=split.x_test, y_test=split.y_test)
    weights = save_weights(root / "vit.pt", spec)
    return spec, split, weights, evaluate_module(spec, split), str(data)


def _devices(count: int) -> list[DeviceSpec]:
    return [DeviceSpec(f"dev{i}", None, 50_000_000, 5.0, "onnx") for i in range(count)]


def _job(trained, devices, tmp_path) -> SplitJob:
    spec, split, _, accuracy, _ = trained
    return SplitJob(spec, "digits", split, accuracy, tuple(devices), SETTINGS, tmp_path, lambda _m: None, 0.0)


def test_strategies_are_a_table_with_edvit_first():
    assert STRATEGIES.names() == ["auto", "edvit", "pipeline"]
    for name in STRATEGIES.names():
        strategy = STRATEGIES.get(name)
        assert strategy.name == name and "\n" not in strategy.description and callable(strategy.plan)


def test_an_unknown_strategy_fails_before_any_work_with_a_close_match(tmp_path):
    with pytest.raises(UnknownNameError, match="Did you mean 'edvit'"):
        plan_split("vit_digits", _devices(2), tmp_path / "plan", settings=SplitSettings(strategy="edvt"))
    assert not (tmp_path / "plan").exists()


def test_a_head_over_every_class_has_a_finite_other_logit_that_never_wins():
    full = torch.nn.Linear(8, 4)
    head = subset_head(full, (0, 1, 2, 3))
    assert torch.isfinite(head.weight).all() and torch.isfinite(head.bias).all()
    assert float(head.bias[-1].detach()) == pytest.approx(math.log(OTHER_FLOOR))
    logits = head(torch.randn(32, 8))
    assert (logits.argmax(-1) < 4).all()
    # with classes left over, "other" is still the mean of their rows
    torch.testing.assert_close(subset_head(full, (0, 2)).weight[-1], full.weight[[1, 3]].mean(0))


@pytest.mark.parametrize("devices", [1, CLASSES], ids=["one-device", "one-class-per-device"])
def test_submodels_and_fusion_at_the_ends_are_finite_and_sane(trained, tmp_path, devices):
    subs = build_submodels(_job(trained, _devices(devices), tmp_path))
    assert sorted(c for subset in subs.subsets for c in subset) == list(range(CLASSES))
    assert all(len(subset) == CLASSES // devices for subset in subs.subsets)
    for sub in subs.models:
        assert all(torch.isfinite(p).all() for p in sub.parameters())
    assert all(math.isfinite(a) and 0.0 <= a <= 1.0 for a in subs.accuracy)
    fusion = fuse(subs.models, trained[1], SETTINGS)
    assert np.isfinite(fusion.head.w1).all() and np.isfinite(fusion.head.w2).all()
    # far above chance (10%) in both; with one device the fused model is the pruned full model
    assert 0.5 < fusion.accuracy <= 1.0, fusion.accuracy
    assert len(fusion.degraded) == (0 if devices == 1 else devices)


def test_one_device_plan_builds_and_reports_finite_numbers(trained, tmp_path):
    _, _, weights, full_accuracy, data = trained
    plan = plan_split("vit_digits", _devices(1), tmp_path / "plan", weights=weights, data=data, settings=SETTINGS)
    (shard,) = plan.shards
    assert shard.classes == tuple(range(CLASSES)) and plan.strategy == "edvit"
    split = plan.report["split"]
    assert math.isfinite(split["accuracy"]) and split["accuracy"] > 0.5
    assert split["degraded_accuracy"] == {}
    assert math.isfinite(split["subset_accuracy"]["shard0"])
    assert plan.report["full"]["accuracy"] == pytest.approx(full_accuracy)
    assert not list(tmp_path.glob(".plan.partial*"))


def test_more_devices_than_classes_is_refused_before_any_work(tmp_path):
    from edgekit.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot split 10 classes over 11 devices"):
        plan_split("vit_digits", _devices(11), tmp_path / "plan", config=TINY_SPLIT_CONFIG, settings=SETTINGS)
    assert not (tmp_path / "plan").exists()


@pytest.mark.slow  # ten shard exports: minutes on a loaded machine
def test_one_class_per_device_plan_builds_and_reports_finite_numbers(trained, tmp_path):
    _, _, weights, _, data = trained
    plan = plan_split("vit_digits", _devices(CLASSES), tmp_path / "plan", weights=weights, data=data,
                      settings=SETTINGS)  # fmt: skip
    assert sorted(s.classes for s in plan.shards) == [(c,) for c in range(CLASSES)]
    split = plan.report["split"]
    assert math.isfinite(split["accuracy"]) and split["accuracy"] > 0.5
    assert all(math.isfinite(a) for a in split["subset_accuracy"].values())
    full = plan.report["full"]["feature_parameters"]
    assert sum(s.parameters for s in plan.shards) <= full
    assert all(len(split["structure"][s.name]["heads"]) == split["structure"][s.name]["depth"] for s in plan.shards)


def test_each_shard_budget_is_its_share_its_devices_memory_and_the_latency_at_its_speed():
    from edgekit.models import create_model
    from edgekit.splitter.classwise import shard_budgets
    from edgekit.splitter.prune import Importance, VitShape
    from edgekit.splitter.structure_search import Budget, search_structure

    shape = VitShape.of(create_model("vit_digits", **TINY_SPLIT_CONFIG).module)
    slow, fast = DeviceSpec("slow", None, 50_000_000, 2.0, "onnx"), DeviceSpec("fast", None, 80_000_000, 8.0, "onnx")
    budgets = shard_budgets(shape, 2, [slow, fast], SplitSettings(latency_ms=0.1))
    half = shape.parameters(shape.full()) // 2
    assert budgets == [(fast, Budget(half, 80_000_000, 800_000)), (slow, Budget(half, 50_000_000, 200_000))]
    for _, budget in budgets:
        result = search_structure(shape, Importance.uniform(shape, 1.0), budget)
        assert shape.flops(result.structure) <= budget.max_flops and "flops" in result.binding


def test_the_cli_defaults_are_the_settings_defaults():
    # The CLI spells its defaults out (importing the strategies at start would pull torch into every command).
    from edgekit.cli.split import split

    defaults = {p.name: p.default for p in split.params}
    settings = SplitSettings()
    for name in ("epochs", "finetune_epochs", "seed", "partition"):
        assert defaults[name] == getattr(settings, name), name
