"""A layer-pipeline plan through real worker processes on loopback: the unsplit model's answer, activations
passed worker to worker, inputs overlapping, and a killed middle stage named within the deadline."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
import torch

from edgekit.data import load_dataset
from edgekit.errors import WorkerError
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.edvit import SplitSettings, plan_split
from edgekit.splitter.local import LocalWorkers
from edgekit.splitter.pipeline_run import PipelineRunner

CONFIG = {"depth": 3}  # vit_digits: 3 blocks, so three devices get a stage each


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from edgekit.models import prepare_model
    from edgekit.training import save_weights, train_classifier

    spec = prepare_model("vit_digits", **CONFIG)
    train_classifier(spec, "digits", epochs=3)
    return save_weights(tmp_path_factory.mktemp("weights") / "vit.pt", spec)


@pytest.fixture(scope="module")
def pipeline_plan(trained, tmp_path_factory):
    devices = [DeviceSpec(f"dev{i}", None, 50_000_000, 5.0, "onnx", link_mbps=1000.0) for i in range(3)]
    settings = SplitSettings(strategy="pipeline", samples=4)
    return plan_split("vit_digits", devices, tmp_path_factory.mktemp("pipe") / "plan", weights=trained,
                      settings=settings)  # fmt: skip


def test_pipeline_plan_has_contiguous_stages_that_cover_the_model(pipeline_plan):
    stages = pipeline_plan.report["pipeline"]["stages"]
    assert [s["blocks"] for s in stages] == [[0, 1], [1, 2], [2, 3]]
    assert [s.device for s in pipeline_plan.shards] == ["dev0", "dev1", "dev2"]
    full = pipeline_plan.report["full"]
    # nothing pruned: the stages hold the full model's parameters between them, each a part of it
    assert sum(s.parameters for s in pipeline_plan.shards) == full["parameters"]
    assert pipeline_plan.report["pipeline"]["accuracy"] == pytest.approx(full["accuracy"], abs=0.006)


def test_pipeline_through_workers_answers_as_the_unsplit_model(pipeline_plan, trained):
    from edgekit.models import prepare_model

    split = load_dataset("digits", tuple(pipeline_plan.input["shape"]))
    x = split.x_test[:24]
    full = prepare_model("vit_digits", trained, **CONFIG).module.eval()
    with torch.no_grad():
        expected = full(torch.from_numpy(x)).numpy()
    with LocalWorkers([d.name for d in pipeline_plan.devices]) as workers:
        with PipelineRunner(pipeline_plan, workers.addresses, timeout=30) as runner:
            assert runner.deploy() == ["stage0", "stage1", "stage2"]
            single = runner.infer(x[:1])
            assert [s.worker for s in single.stages] == ["dev0", "dev1", "dev2"]  # every stage ran, in order
            np.testing.assert_allclose(single.logits, expected[:1], atol=1e-4, rtol=1e-4)
            stream = runner.stream([x[i : i + 1] for i in range(len(x))], in_flight=3)
    got = np.concatenate([o.logits for o in stream.outputs])
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    # activations crossed between workers: each later stage received the tokens (17 x 64 float32)
    assert all(s.bytes_in > 17 * 64 * 4 for s in single.stages[1:])


def test_a_killed_middle_stage_ends_the_request_in_time_naming_it(pipeline_plan):
    split = load_dataset("digits", tuple(pipeline_plan.input["shape"]))
    with LocalWorkers([d.name for d in pipeline_plan.devices]) as workers:
        with PipelineRunner(pipeline_plan, workers.addresses, timeout=3.0) as runner:
            runner.deploy()
            runner.infer(split.x_test[:1])
            workers.workers["dev1"].stop(signal.SIGKILL)
            start = time.monotonic()
            with pytest.raises(WorkerError, match=r"worker dev1 \(127\.0\.0\.1:\d+\): stage stage1 is unreachable"):
                runner.infer(split.x_test[:1])
            assert time.monotonic() - start < 3.0 + 1.0
            # a stopped (not dead) middle stage: the deadline, not the connection, ends the request
            workers.workers["dev2"].send(signal.SIGSTOP)
            start = time.monotonic()
            with pytest.raises(WorkerError, match=r"dev1|dev2"):
                runner.infer(split.x_test[:1])
            assert time.monotonic() - start < 3.0 + 1.0
            workers.workers["dev2"].send(signal.SIGCONT)


def test_stages_call_each_other_with_the_fleet_token(pipeline_plan, tmp_path):
    """Workers that require a token: the caller presents it to the first stage, each stage to the next; a
    middle stage with another token refuses the stage before it, and the error names that stage."""
    from edgekit.fleet.auth import ClientAuth
    from edgekit.splitter.local import start_local_worker

    good, other = tmp_path / "token", tmp_path / "other"
    good.write_text("a-fleet-token-of-enough-length\n")
    other.write_text("another-token-of-enough-length\n")
    split = load_dataset("digits", tuple(pipeline_plan.input["shape"]))
    tokens = {"dev0": good, "dev1": good, "dev2": good}
    workers = {}
    try:
        for name, token in tokens.items():
            workers[name] = start_local_worker(name, tmp_path / name, "--token-file", str(token))
        addresses = {n: w.address for n, w in workers.items()}
        auth = ClientAuth(token=good.read_text().strip())
        with PipelineRunner(pipeline_plan, addresses, timeout=30, auth=auth) as runner:
            runner.deploy()
            assert [s.worker for s in runner.infer(split.x_test[:1]).stages] == ["dev0", "dev1", "dev2"]
        workers["dev2"].stop(signal.SIGKILL)
        workers["dev2"] = start_local_worker("dev2", tmp_path / "dev2", "--token-file", str(other))
        addresses["dev2"] = workers["dev2"].address
        with PipelineRunner(pipeline_plan, addresses, timeout=30, auth=auth) as runner:
            with pytest.raises(WorkerError, match=r"worker dev2 \(127\.0\.0\.1:\d+\): stage stage2 refused the "
                               r"previous stage's credentials \(wrong bearer token\)"):  # fmt: skip
                runner.infer(split.x_test[:1])
    finally:
        for w in workers.values():
            w.stop(signal.SIGKILL)
