"""Shard bundles onto workers: every worker at once, each one's uploads in turn, all under one deadline.

A worker takes one upload at a time (its call gate refuses a second), so the uploads to one worker run in
sequence and the workers run in parallel: a plan deploys in the time of its busiest worker, not the sum.
The deadline covers the whole deploy: the request timeout or ``DEPLOY_SECONDS`` (a worker's first load can be
slow: the ExecuTorch runtime imports torch), whichever is larger, plus a second per MiB the busiest worker
receives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.splitter.plan import ShardPlan, SplitPlan
from edgekit.splitter.wire import proto
from edgekit.splitter.workerset import WorkerSet

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
DEPLOY_SECONDS = 60.0


@dataclass(frozen=True)
class Upload:
    shard: str
    worker: str
    bytes: int
    started_s: float  # time.monotonic()
    seconds: float


@dataclass(frozen=True)
class DeployOutcome:
    uploads: tuple[Upload, ...]
    failed: dict[str, tuple[Any, str]]  # worker -> (the gRPC error, which shard it was deploying)
    deadline_s: float
    seconds: float


def bundle_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def deploy_parallel(
    plan: SplitPlan,
    workers: WorkerSet,
    todo: Mapping[str, Sequence[ShardPlan]],
    timeout: float,
    on_shard: Callable[[ShardPlan, int], None] | None = None,
) -> DeployOutcome:
    """Upload ``todo`` (worker -> the shards it lacks), workers in parallel, under one deadline."""
    import grpc

    paths = {s.name: plan.verify_shard(s) for shards in todo.values() for s in shards}
    sizes = {name: bundle_bytes(path) for name, path in paths.items()}
    busiest = max((sum(sizes[s.name] for s in shards) for shards in todo.values()), default=0)
    budget = max(timeout, DEPLOY_SECONDS) + busiest / (1 << 20)
    start = time.monotonic()
    deadline = start + budget

    def one_worker(worker: str, shards: Sequence[ShardPlan]) -> tuple[list[Upload], tuple[Any, str] | None]:
        done = []
        for shard in shards:
            began = time.monotonic()
            try:
                workers.stubs[worker].Deploy(bundle_chunks(shard.name, shard.digest, paths[shard.name]),
                                             timeout=max(0.001, deadline - began))  # fmt: skip
            except grpc.RpcError as exc:
                return done, (exc, shard.name)
            done.append(Upload(shard.name, worker, sizes[shard.name], began, time.monotonic() - began))
            if on_shard:
                on_shard(shard, sizes[shard.name])
        return done, None

    uploads: list[Upload] = []
    failed: dict[str, tuple[Any, str]] = {}
    jobs = {w: s for w, s in todo.items() if s}
    if jobs:
        with futures.ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="deploy") as pool:
            running = {w: pool.submit(one_worker, w, s) for w, s in jobs.items()}
            for worker, job in running.items():
                done, failure = job.result()
                uploads.extend(done)
                if failure:
                    failed[worker] = failure
    return DeployOutcome(tuple(uploads), failed, budget, time.monotonic() - start)


def bundle_chunks(shard: str, digest: str, path: Path) -> Iterator[Any]:
    """A bundle directory as the DeployChunk stream a worker receives (one empty chunk for an empty file)."""
    pb, _ = proto()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = str(file.relative_to(path))
        with file.open("rb") as fh:
            first = True
            while True:
                data = fh.read(CHUNK_BYTES)
                if not data and not first:
                    break
                yield pb.DeployChunk(shard=shard, digest=digest, path=rel, data=data)
                first = False
                if len(data) < CHUNK_BYTES:
                    break
