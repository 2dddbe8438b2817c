"""What the worker tests compare against (the plan's shards run and fused in this process) and how they upload:
a raw upload, an upload held after its first chunk, the wait until the worker is receiving it."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np

from edgekit.runtimes import load
from edgekit.splitter.upload import STAGING_PREFIX
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


def wait_for_staging(workdir, seconds: float = 20.0) -> None:
    """Until the worker is inside an upload (its staging directory exists): a chunk a client has yielded is not
    yet one the worker has received."""
    deadline = time.monotonic() + seconds
    while not any(p.name.startswith(STAGING_PREFIX) for p in workdir.iterdir()):
        assert time.monotonic() < deadline, "the upload never reached the worker"
        time.sleep(0.02)


def shard_chunks(plan, shard):
    pb, _ = proto()
    return [pb.DeployChunk(shard=shard.name, digest=shard.digest, path=p.name, data=p.read_bytes())
            for p in sorted(plan.shard_dir(shard).iterdir())]  # fmt: skip


class HeldUpload:
    """An upload that sends its first chunk, then waits for ``release`` (or gives up after 30 s)."""

    def __init__(self, chunks):
        self.chunks, self.release, self.started = chunks, threading.Event(), threading.Event()

    def __iter__(self):
        yield self.chunks[0]
        self.started.set()
        self.release.wait(30)
        yield from self.chunks[1:]
