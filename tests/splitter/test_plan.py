"""The session plan: pruned shards exported verified to every format, plan.json round trip, tampering caught."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgekit.bundle import read_bundle
from edgekit.errors import BundleError
from edgekit.runtimes import load
from edgekit.splitter.plan import PLAN_NAME, SplitPlan, load_plan
from tests.splitter.conftest import FORMATS


def test_every_shard_is_pruned_and_exported_verified(split_plan):
    assert sorted(s.format for s in split_plan.shards) == sorted(FORMATS)
    full = split_plan.report["full"]["feature_parameters"]
    for shard in split_plan.shards:
        bundle = read_bundle(split_plan.verify_shard(shard))
        manifest = bundle.manifest.to_json()
        assert manifest["validation"]["passed"] and manifest["validation"]["max_abs_err"] < 1e-4
        assert manifest["model"]["family"] == "vit-shard" and manifest["model"]["config"]["block_heads"] == list(
            shard.heads
        )
        if shard.format == "pte":
            assert manifest["export"]["undelegated_op_count"] == 0
        assert shard.parameters <= full / len(split_plan.shards)  # the default budget: at most 1/N of the size
        kept = split_plan.report["split"]["structure"][shard.name]  # what the search kept, as built and exported
        config = manifest["model"]["config"]
        assert (config["dim"], config["depth"], config["block_head_dim"]) == (kept["width"], kept["depth"],
                                                                             kept["head_dim"])  # fmt: skip
        assert list(shard.heads) == kept["heads"] and list(shard.mlp) == kept["mlp"] == config["block_mlp"]
        assert shard.feature_dim == kept["width"] and kept["bound_by"] == ["parameters"]
    classes = sorted(c for s in split_plan.shards for c in s.classes)
    assert classes == list(range(10))


def test_report_numbers_are_consistent(split_plan):
    report = split_plan.report
    split = report["split"]
    assert 0 <= split["accuracy"] <= 1 and 0 <= report["full"]["accuracy"] <= 1
    assert split["largest_shard_fraction"] == pytest.approx(
        max(s.parameters for s in split_plan.shards) / report["full"]["feature_parameters"]
    )
    assert split["critical_path_ms"] == pytest.approx(max(split["device_busy_ms"].values()))
    # The estimate (a shard timed here, scaled by matmul speeds) and its FLOP bound are both measured numbers; that
    # the first is above the second holds on a quiet machine only, so it is benchmarks/split.py's to show.
    for shard in split_plan.shards:
        assert shard.estimated_ms > 0 and shard.bound_ms > 0
    assert split["critical_path_bound_ms"] <= split["critical_path_ms"]
    assert set(split["degraded_accuracy"]) == {s.name for s in split_plan.shards}


def test_shard_bundles_compute_the_fused_accuracy_of_the_report(split_plan):
    """Run each exported shard with its own runtime, fuse: the held-out accuracy is the planner's."""
    from edgekit.data import load_dataset

    split = load_dataset("digits", tuple(split_plan.input["shape"]))
    fusion = split_plan.load_fusion()
    features = []
    for shard in split_plan.shards:
        with load(split_plan.verify_shard(shard)) as runtime:
            features.append(
                np.concatenate([runtime.run(split.x_test[i : i + 1])["features"] for i in range(len(split.x_test))])
            )
    accuracy = float((fusion.logits(features).argmax(-1) == split.y_test).mean())
    assert accuracy == pytest.approx(split_plan.report["split"]["accuracy"], abs=1.5 / len(split.y_test))


def test_plan_round_trips_through_json(split_plan):
    again = load_plan(split_plan.root)
    assert again.to_json() == split_plan.to_json()
    assert SplitPlan.from_json(json.loads(json.dumps(split_plan.to_json())), split_plan.root) == again


@pytest.fixture
def plan_copy(split_plan, tmp_path):
    root = tmp_path / "plan"
    shutil.copytree(split_plan.root, root)
    return root


def test_tampered_shard_is_caught_by_the_plan(plan_copy):
    plan = load_plan(plan_copy)
    shard = plan.shards[0]
    model_file = next(p for p in plan.shard_dir(shard).iterdir() if p.suffix in (".onnx", ".tflite", ".pte"))
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its sha256"):
        plan.verify_shard(shard)


def test_a_replaced_manifest_is_caught_by_the_digest(plan_copy):
    plan = load_plan(plan_copy)
    manifest = plan.shard_dir(plan.shards[1]) / "edgekit.json"
    manifest.write_text(manifest.read_text().replace('"task": "features"', '"task": "classification"'))
    with pytest.raises(BundleError, match="does not match the digest"):
        plan.verify_shard(plan.shards[1])


def test_fusion_weights_are_pinned(plan_copy):
    (plan_copy / "fusion.npz").write_bytes((plan_copy / "fusion.npz").read_bytes() + b"\0")
    with pytest.raises(BundleError, match="fusion.npz is missing or does not match"):
        load_plan(plan_copy).load_fusion()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.update(schema="edgekit.split/0"), "schema edgekit.split/1"),
        (lambda d: d["shards"][0].update(device="ghost"), "no device 'ghost'"),
        (lambda d: d["shards"][0].pop("digest"), "malformed"),
        (lambda d: d["shards"][1].update(name=d["shards"][0]["name"]), "unique"),
    ],
)
def test_malformed_plans_are_refused(plan_copy, edit, match):
    data = json.loads((plan_copy / PLAN_NAME).read_text())
    edit(data)
    (plan_copy / PLAN_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=match):
        load_plan(plan_copy)


def test_a_plan_cannot_point_outside_its_directory(plan_copy):
    data = json.loads((plan_copy / PLAN_NAME).read_text())
    data["shards"][0]["bundle"] = "../../etc"
    (plan_copy / PLAN_NAME).write_text(json.dumps(data))
    plan = load_plan(plan_copy)
    with pytest.raises(BundleError, match="outside the plan directory"):
        plan.verify_shard(plan.shards[0])
