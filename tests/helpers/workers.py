"""What the worker tests compare against: the plan's shards run and fused in this process, and a raw upload."""

from __future__ import annotations

import grpc
import numpy as np

from edgekit.runtimes import load
from edgekit.splitter.wire import proto


def local_predictions(plan, x):
    """The same shards run in this process with their runtimes, fused here."""
    features = []
    for shard in plan.shards:
        with load(plan.verify_shard(shard)) as runtime:
            features.append(np.concatenate([runtime.run(x[i : i + 1])["features"] for i in range(len(x))]))
    return plan.load_fusion().logits(features)


def deploy_raw(address: str, plan, shard) -> None:
    pb, pb_grpc = proto()
    files = sorted(p for p in plan.shard_dir(shard).iterdir())
    with grpc.insecure_channel(address) as channel:
        chunks = [
            pb.DeployChunk(shard=shard.name, digest=shard.digest, path=p.name, data=p.read_bytes()) for p in files
        ]
        pb_grpc.ShardWorkerStub(channel).Deploy(iter(chunks), timeout=60)
