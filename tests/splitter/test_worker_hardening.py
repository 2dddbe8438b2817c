"""A worker facing a careless or hostile client: drains, upload bounds, cancelled uploads, call bounds,
and the start-up errors a person meets first (bad port, port in use, a public address without auth)."""

from __future__ import annotations

import signal
import subprocess
import time
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgekit.errors import InputError
from edgekit.splitter.upload import STAGING_PREFIX, UploadLimits, receive
from edgekit.splitter.wire import encode, proto
from tests.helpers.workers import HeldUpload, shard_chunks, wait_for_staging
from tests.splitter.conftest import EDGEKIT

pytestmark = pytest.mark.workers

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _status(channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def _wait_status(channel, wanted: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while _status(channel) != wanted:
        assert time.monotonic() < deadline, f"health never became {wanted}"
        time.sleep(0.05)


def test_standard_health_client_sees_serving_then_not_serving_during_a_drain(split_plan, worker_factory):
    pb, pb_grpc = proto()
    worker = worker_factory("drainer", "--grace", "20")
    shard = next(s for s in split_plan.shards if s.format == "onnx")
    with grpc.insecure_channel(worker.address) as channel:
        _wait_status(channel, SERVING)
        held = HeldUpload(shard_chunks(split_plan, shard))
        upload = pb_grpc.ShardWorkerStub(channel).Deploy.future(iter(held), timeout=60)
        assert held.started.wait(10)
        wait_for_staging(worker.workdir)  # the worker is inside the upload (a chunk sent is not yet one received)
        worker.send(signal.SIGTERM)
        _wait_status(channel, NOT_SERVING, seconds=10)  # still answering health while the upload is in flight
        request = pb.InferRequest(shard=shard.name, inputs=[encode("image", np.zeros((1, 1, 8, 8), np.float32))])
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.ShardWorkerStub(channel).Infer(request, timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "draining" in info.value.details()
        held.release.set()
        assert upload.result().shard.digest == shard.digest  # the in-flight call finished
    assert worker.proc.wait(timeout=30) == 0


def test_a_worker_with_stored_shards_listens_at_once_and_serves_once_loaded(split_plan, worker_factory, tmp_path):
    pb, pb_grpc = proto()
    workdir = tmp_path / "stored"
    first = worker_factory("keeper", workdir=workdir)
    pte = next(s for s in split_plan.shards if s.format == "pte")  # loading it imports torch: seconds
    with grpc.insecure_channel(first.address) as channel:
        pb_grpc.ShardWorkerStub(channel).Deploy(iter(shard_chunks(split_plan, pte)), timeout=120)
    first.stop(signal.SIGTERM, wait=60)
    (workdir / f"{STAGING_PREFIX}left-by-a-crash").mkdir()
    second = worker_factory("keeper", workdir=workdir)  # returns when the worker printed "listening"
    with grpc.insecure_channel(second.address) as channel:
        assert _status(channel) == NOT_SERVING
        assert pb_grpc.ShardWorkerStub(channel).Health(pb.HealthRequest(), timeout=5).status == "loading"
        _wait_status(channel, SERVING, seconds=120)
        reply = pb_grpc.ShardWorkerStub(channel).Health(pb.HealthRequest(), timeout=5)
        assert reply.status == "ok" and [s.shard for s in reply.shards] == [pte.name]
    assert not any(p.name.startswith(STAGING_PREFIX) for p in workdir.iterdir())


def test_a_cancelled_upload_leaves_nothing_behind(split_plan, worker_factory):
    _, pb_grpc = proto()
    worker = worker_factory("cancel")
    shard = next(s for s in split_plan.shards if s.format == "onnx")
    with grpc.insecure_channel(worker.address) as channel:
        held = HeldUpload(shard_chunks(split_plan, shard))
        upload = pb_grpc.ShardWorkerStub(channel).Deploy.future(iter(held), timeout=60)
        assert held.started.wait(10)
        # the client has sent its first chunk; the worker makes its staging directory as that chunk arrives
        deadline = time.monotonic() + 10
        while not any(p.name.startswith(STAGING_PREFIX) for p in worker.workdir.iterdir()):
            assert time.monotonic() < deadline, "the worker never started receiving"
            time.sleep(0.02)
        upload.cancel()
        held.release.set()
        deadline = time.monotonic() + 10
        while any(p.name.startswith(STAGING_PREFIX) for p in worker.workdir.iterdir()):
            assert time.monotonic() < deadline, "staging directory left behind"
            time.sleep(0.05)
        assert _status(channel) == SERVING and not list((worker.workdir / "shards").iterdir())


def test_a_flood_of_empty_chunks_is_cut_off(split_plan, worker_factory):
    pb, pb_grpc = proto()
    worker = worker_factory("flood")
    shard = split_plan.shards[0]
    sent = []

    def flood():
        for i in range(100_000):
            sent.append(i)
            yield pb.DeployChunk(shard=shard.name, digest=shard.digest, path="model.onnx", data=b"")

    with grpc.insecure_channel(worker.address) as channel:
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.ShardWorkerStub(channel).Deploy(flood(), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty chunk" in info.value.details()
    assert time.monotonic() - start < 10 and len(sent) < 100_000
    assert not any(p.name.startswith(STAGING_PREFIX) for p in worker.workdir.iterdir())


@pytest.mark.parametrize("max_calls, refusal", [("1", "more than 1 calls at once"), ("4", "another upload")])
def test_calls_beyond_the_bound_and_a_second_upload_are_refused(split_plan, worker_factory, max_calls, refusal):
    pb, pb_grpc = proto()
    worker = worker_factory("busy", "--max-calls", max_calls)
    shard = next(s for s in split_plan.shards if s.format == "onnx")
    request = pb.InferRequest(shard=shard.name, inputs=[encode("image", np.zeros((1, 1, 8, 8), np.float32))])
    with grpc.insecure_channel(worker.address) as channel:
        stub = pb_grpc.ShardWorkerStub(channel)
        held = HeldUpload(shard_chunks(split_plan, shard))
        upload = stub.Deploy.future(iter(held), timeout=60)
        assert held.started.wait(10)
        with pytest.raises(grpc.RpcError) as info:  # one upload at a time: uploads cannot take inference's threads
            stub.Deploy(iter(shard_chunks(split_plan, shard)), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and refusal in info.value.details()
        assert _status(channel) == SERVING  # health is outside the bound
        held.release.set()
        assert upload.result().shard.digest == shard.digest
        assert tuple(stub.Infer(request, timeout=5).outputs[0].shape) == (1, shard.feature_dim)


def test_upload_limits_on_bytes_files_and_depth(tmp_path):
    def chunk(path, data=b"x"):
        return SimpleNamespace(shard="s", digest="a" * 64, path=path, data=data)

    limits = UploadLimits(max_bytes=10, max_files=2, max_depth=2)
    cases = [
        ([chunk("a", b"x" * 11)], "larger than"),
        ([chunk("a"), chunk("b"), chunk("c")], "at most 2 files"),
        ([chunk("a/b/c")], "deeper than 2"),
        ([chunk("../a")], "refusing upload path"),
        ([chunk("a", b""), chunk("a", b"")], "repeated empty chunk"),
        ([], "empty upload"),
    ]
    for i, (chunks, message) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        with pytest.raises(InputError, match=message):
            receive(chunks, tmp_path / str(i), limits)
    upload = receive([chunk("a/b", b"12"), chunk("a/b", b"34"), chunk("c", b"")], tmp_path / "ok", limits)
    assert (upload.bytes, upload.files) == (4, 2) and (tmp_path / "ok/a/b").read_bytes() == b"1234"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "99999"], "--port 99999 is not a TCP port"),
        (["--host", "0.0.0.0", "--port", "0"], "refusing to serve 0.0.0.0 without authentication"),
        (["--host", "192.0.2.1", "--port", "0", "--insecure"], "192.0.2.1 is not an address of this machine"),
        (["--port", "0", "--tls", "{fleet}"], "is the fleet directory (it holds the CA key"),
    ],
)
def test_worker_start_errors_are_one_line_exit_2(args, message, tmp_path):
    from edgekit.fleet.ca import init_fleet

    args = [a.format(fleet=init_fleet(tmp_path / "fleet")) if "{fleet}" in a else a for a in args]
    proc = subprocess.run([EDGEKIT, "worker", "--workdir", str(tmp_path), *args], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_a_port_in_use_is_one_line_exit_2(worker_factory, tmp_path):
    taken = worker_factory("taken")
    port = taken.address.rsplit(":", 1)[1]
    proc = subprocess.run([EDGEKIT, "worker", "--workdir", str(tmp_path), "--port", port], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == f"error: port {port} on 127.0.0.1 is already in use (another worker?)"
    )
