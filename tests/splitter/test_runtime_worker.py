"""A worker on the runtime-only install (no torch, numpy<2, tflite-runtime): it serves ONNX and LiteRT
shards and names the extra it lacks for an ExecuTorch one."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from edgekit.errors import WorkerError
from edgekit.runtimes import load
from edgekit.splitter import SplitCoordinator
from edgekit.splitter.local import start_local_worker
from edgekit.splitter.wire import decode, encode, proto
from tests.helpers.workers import deploy_raw as _deploy_raw

pytestmark = [pytest.mark.runtime_env, pytest.mark.workers]


def test_worker_without_torch_serves_onnx_and_tflite_shards(runtime_env, split_plan, tmp_path):  # noqa: F811
    pb, pb_grpc = proto()
    worker = start_local_worker("pi", tmp_path / "pi", python=str(runtime_env))
    try:
        everything_here = {d.name: worker.address for d in split_plan.devices}
        with SplitCoordinator(split_plan, everything_here, timeout=30) as coordinator:
            formats = set(next(iter(coordinator.health().values())).formats)
            assert formats == {"onnx", "tflite"}
            with pytest.raises(WorkerError, match=r"cannot run pte bundles .*edgekit-sdk\[executorch\]"):
                coordinator.deploy()
        x = np.random.default_rng(3).standard_normal((1, 1, 8, 8)).astype(np.float32)
        with grpc.insecure_channel(worker.address) as channel:
            stub = pb_grpc.ShardWorkerStub(channel)
            for shard in (s for s in split_plan.shards if s.format != "pte"):
                _deploy_raw(worker.address, split_plan, shard)
                reply = stub.Infer(pb.InferRequest(shard=shard.name, inputs=[encode("image", x)]), timeout=10)
                with load(split_plan.verify_shard(shard)) as runtime:
                    expected = runtime.run(x)["features"]
                np.testing.assert_allclose(decode(reply.outputs[0]), expected, rtol=1e-5, atol=1e-5)
    finally:
        worker.stop()
