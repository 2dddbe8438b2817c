"""Split inference over real worker processes on loopback ports: deploy, fan out, fuse, and every failure."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import grpc
import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.errors import ConfigError, InputError, WorkerError
from edgekit.runtimes import load
from edgekit.splitter import SplitCoordinator
from edgekit.splitter.coordinator import parse_workers
from edgekit.splitter.wire import encode, proto
from tests.helpers.workers import deploy_raw, local_predictions
from tests.splitter.conftest import EDGEKIT, addresses

pytestmark = pytest.mark.workers

TIMEOUT = 3.0


@pytest.fixture(scope="module")
def test_split(split_plan):
    return load_dataset("digits", tuple(split_plan.input["shape"]))


def test_split_inference_across_worker_processes_matches_local_fusion(split_plan, shared_workers, test_split):
    plan_workers = shared_workers
    x, y = test_split.x_test[:40], test_split.y_test[:40]
    with SplitCoordinator(split_plan, addresses(plan_workers), timeout=TIMEOUT) as coordinator:
        assert coordinator.deploy() == []  # the fixture deployed them: the workers hold exactly these digests
        assert sorted(coordinator.deploy(force=True)) == sorted(s.name for s in split_plan.shards)
        health = coordinator.health()
        assert {h.worker for h in health.values()} == set(plan_workers)
        assert all(h.pid != os.getpid() for h in health.values())
        evaluation = coordinator.evaluate(x, y)
    local = local_predictions(split_plan, x)
    assert evaluation.accuracy == pytest.approx(float((local.argmax(-1) == y).mean()))
    assert evaluation.degraded_samples == 0
    rows = evaluation.per_worker()
    assert {r["worker"] for r in rows} == set(plan_workers)
    for r in rows:
        assert r["calls"] == 40 and r["compute_ms"] > 0 and r["round_trip_ms"] >= r["compute_ms"]
        assert r["bytes_sent"] > 64 * 4 and r["bytes_received"] > 64 * 4  # an 8x8 float image out, 64 features back


def test_single_input_logits_equal_local_fusion(split_plan, shared_workers, test_split):
    x = test_split.x_test[7:8]
    with SplitCoordinator(split_plan, addresses(shared_workers), timeout=TIMEOUT) as coordinator:
        output = coordinator.infer(x)
        with pytest.raises(InputError, match=r"shape \[1, 1, 8, 8\]"):
            coordinator.infer(np.zeros((1, 8, 8), np.float32))
        with pytest.raises(InputError, match="float32"):
            coordinator.infer(x.astype(np.float64))
    np.testing.assert_allclose(output.logits, local_predictions(split_plan, x), rtol=1e-5, atol=1e-5)
    assert not output.degraded and len(output.calls) == len(split_plan.shards)


def test_a_worker_killed_mid_run_ends_the_request_within_the_timeout(split_plan, with_victim, test_split):
    plan_workers, victim = with_victim("dev1")
    x, y = test_split.x_test[:30], test_split.y_test[:30]
    failed_at: list[float] = []

    def kill_after_five(i, _result):
        if i == 4:
            victim.stop(signal.SIGKILL)
            failed_at.append(time.monotonic())

    with SplitCoordinator(split_plan, addresses(plan_workers), timeout=TIMEOUT) as coordinator:
        coordinator.deploy()
        with pytest.raises(WorkerError, match=r"worker dev1 \(127\.0\.0\.1:\d+\)") as info:
            coordinator.evaluate(x, y, on_sample=kill_after_five)
    assert time.monotonic() - failed_at[0] < TIMEOUT + 1.0
    assert info.value.worker.startswith("dev1")


def test_a_hung_worker_is_named_after_the_timeout(split_plan, with_victim, test_split):
    plan_workers, victim = with_victim("dev0")
    with SplitCoordinator(split_plan, addresses(plan_workers), timeout=1.0) as coordinator:
        coordinator.deploy()
        victim.send(signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(WorkerError, match="worker dev0 .* did not answer within 1 s"):
            coordinator.infer(test_split.x_test[:1])
        assert time.monotonic() - start < 2.0


def test_degraded_mode_answers_from_the_remaining_shards(split_plan, with_victim, test_split):
    plan_workers, victim = with_victim("dev0")
    x, y = test_split.x_test[:60], test_split.y_test[:60]
    with SplitCoordinator(split_plan, addresses(plan_workers), timeout=TIMEOUT, degraded_ok=True) as coordinator:
        coordinator.deploy()
        victim.stop(signal.SIGKILL)
        evaluation = coordinator.evaluate(x, y)
        assert "dev0" in coordinator.down
    assert evaluation.degraded_samples == len(x)
    missing = next(s.name for s in split_plan.shards if s.device == "dev0")
    features = []
    for shard in split_plan.shards:
        if shard.name == missing:
            features.append(None)
            continue
        with load(split_plan.verify_shard(shard)) as runtime:
            features.append(np.concatenate([runtime.run(x[i : i + 1])["features"] for i in range(len(x))]))
    expected = (split_plan.load_fusion().logits(features).argmax(-1) == y).mean()
    assert evaluation.accuracy == pytest.approx(expected)


def test_worker_rejects_a_tampered_shard_and_keeps_serving(split_plan, worker_factory, tmp_path):
    pb, pb_grpc = proto()
    worker = worker_factory("solo")
    shard = next(s for s in split_plan.shards if s.format == "onnx")
    tampered = tmp_path / "tampered"
    shutil.copytree(split_plan.shard_dir(shard), tampered)
    model = tampered / "model.onnx.data"
    data = bytearray(model.read_bytes())
    data[100] ^= 0x01
    model.write_bytes(bytes(data))

    def upload(root, digest, paths=None):
        chunks = [
            pb.DeployChunk(shard=shard.name, digest=digest, path=p, data=(root / p).read_bytes())
            for p in (paths or sorted(f.name for f in root.iterdir()))
        ]
        return stub.Deploy(iter(chunks), timeout=30)

    with grpc.insecure_channel(worker.address) as channel:
        stub = pb_grpc.ShardWorkerStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            upload(tampered, shard.digest)
        assert info.value.code() == grpc.StatusCode.DATA_LOSS and "does not match its sha256" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            upload(split_plan.shard_dir(shard), "0" * 64)
        assert "does not match digest" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.Deploy(iter([pb.DeployChunk(shard=shard.name, digest=shard.digest, path="../escape", data=b"x")]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "refusing upload path" in info.value.details()
        assert stub.Health(pb.HealthRequest(), timeout=5).shards == []  # nothing half-accepted
        reply = upload(split_plan.shard_dir(shard), shard.digest)
        assert reply.shard.digest == shard.digest
        assert not any(p.name.startswith(".staging") for p in worker.workdir.iterdir())


def test_worker_rejects_malformed_requests(split_plan, worker_factory):
    pb, pb_grpc = proto()
    worker = worker_factory("strict", "--max-message-mb", "1")
    shard = next(s for s in split_plan.shards if s.format == "onnx")
    good = np.zeros((1, 1, 8, 8), np.float32)
    deploy_raw(worker.address, split_plan, shard)
    cases = [
        (pb.InferRequest(shard="nope", inputs=[encode("image", good)]), grpc.StatusCode.NOT_FOUND, "not deployed"),
        (pb.InferRequest(shard=shard.name, inputs=[pb.Tensor(name="image", dtype="float32", shape=[1, 1, 8, 8],
                                                             data=b"\0" * 7)]),
         grpc.StatusCode.INVALID_ARGUMENT, "7 bytes of data"),
        (pb.InferRequest(shard=shard.name, inputs=[pb.Tensor(name="image", dtype="pickle", shape=[1], data=b"")]),
         grpc.StatusCode.INVALID_ARGUMENT, "unknown dtype"),
        (pb.InferRequest(shard=shard.name, inputs=[encode("image", np.zeros((2, 1, 8, 8), np.float32))]),
         grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        (pb.InferRequest(shard=shard.name, inputs=[encode("pixels", good)]), grpc.StatusCode.INVALID_ARGUMENT, "image"),
        (pb.InferRequest(shard=shard.name, inputs=[encode("image", np.zeros((1, 1, 8, 8), np.int64))]),
         grpc.StatusCode.INVALID_ARGUMENT, "int64"),
        (pb.InferRequest(shard=shard.name, inputs=[encode("image", np.zeros((600, 1, 32, 32), np.float32))]),
         grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ]  # fmt: skip
    with grpc.insecure_channel(worker.address, options=[("grpc.max_send_message_length", 8 << 20)]) as channel:
        stub = pb_grpc.ShardWorkerStub(channel)
        for request, code, text in cases:
            with pytest.raises(grpc.RpcError) as info:
                stub.Infer(request, timeout=10)
            assert info.value.code() == code, (text, info.value.details())
            assert text in (info.value.details() or "")
        reply = stub.Infer(pb.InferRequest(shard=shard.name, inputs=[encode("image", good)]), timeout=10)
        assert reply.outputs[0].name == "features" and worker.proc.poll() is None


def test_deployed_shards_survive_a_worker_restart(split_plan, worker_factory, tmp_path):
    pb, pb_grpc = proto()
    workdir = tmp_path / "persistent"
    first = worker_factory("keeper", workdir=workdir)
    light = [s for s in split_plan.shards if s.format in ("onnx", "tflite")]  # no torch import in this test
    for shard in light:
        deploy_raw(first.address, split_plan, shard)
    # generous: on a loaded 2-core machine a worker holding ORT and LiteRT took over 10 s to exit once
    first.stop(signal.SIGTERM, wait=60.0)
    assert first.proc.returncode == 0  # SIGTERM is a clean shutdown
    second = worker_factory("keeper", workdir=workdir)
    with grpc.insecure_channel(second.address) as channel:
        stub = pb_grpc.ShardWorkerStub(channel)
        deadline = time.monotonic() + 60  # it listens at once and loads its stored shards in the background
        while (reply := stub.Health(pb.HealthRequest(), timeout=10)).status == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        held = {s.shard: s.digest for s in reply.shards}
        assert held == {s.name: s.digest for s in light}
        reply = stub.Infer(
            pb.InferRequest(shard=light[0].name, inputs=[encode("image", np.zeros((1, 1, 8, 8), np.float32))])
        )
        assert tuple(reply.outputs[0].shape) == (1, light[0].feature_dim)


def test_workers_option_parsing(split_plan):
    assert parse_workers("a=1.2.3.4:5, b=host:6") == {"a": "1.2.3.4:5", "b": "host:6"}
    with pytest.raises(ConfigError, match="name=host:port"):
        parse_workers("a:5")
    with pytest.raises(ConfigError, match="not a device of the plan"):
        SplitCoordinator(split_plan, {"ghost": "127.0.0.1:1"})
    with pytest.raises(ConfigError, match="no address for device dev0"):
        SplitCoordinator(split_plan, {})


def _cli(*args, timeout=120):
    return subprocess.run([EDGEKIT, *args], capture_output=True, text=True, timeout=timeout)


def test_cli_infer_split_eval_and_input(split_plan, shared_workers, test_split, tmp_path):
    spec = ",".join(f"{n}={w.address}" for n, w in shared_workers.items())
    proc = _cli("infer-split", str(split_plan.root), "--workers", spec, "--eval", "digits", "--limit", "25",
                "--json", str(tmp_path / "r.json"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "split accuracy on digits" in proc.stdout and "dev0" in proc.stdout
    assert "deployed" not in proc.stderr  # the shared workers already hold the shards
    np.save(tmp_path / "x.npy", test_split.x_test[:1])
    proc = _cli("infer-split", str(split_plan.root), "--workers", spec, "-i", str(tmp_path / "x.npy"))
    assert proc.returncode == 0, proc.stderr
    expected = int(local_predictions(split_plan, test_split.x_test[:1]).argmax(-1)[0])
    assert f"prediction: class {expected} " in proc.stdout


def test_cli_names_a_dead_worker_within_the_timeout(split_plan, with_victim):
    plan_workers, victim = with_victim("dev2")
    victim.stop(signal.SIGKILL)
    spec = ",".join(f"{n}={w.address}" for n, w in plan_workers.items())
    start = time.monotonic()
    proc = _cli("infer-split", str(split_plan.root), "--workers", spec, "--eval", "digits", "--timeout", "2")
    elapsed = time.monotonic() - start
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: worker dev2 ({victim.address})") and "Traceback" not in proc.stderr
    assert elapsed < 2 + 8  # the timeout, plus interpreter start-up
    proc = _cli("infer-split", str(split_plan.root), "--workers", spec, "--eval", "digits", "--limit", "10",
                "--degraded-ok")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "10 degraded" in proc.stdout
