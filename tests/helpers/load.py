"""Concurrent clients for load tests and benchmarks: N threads share a fixed number of requests, every request
gets an id, and whatever each returns or raises is kept once per id (a second result for an id is recorded as
a duplicate, a request that never returns is missing).

``send(request_id, image) -> logits`` is the client: today ``SplitCoordinator.infer`` through the API; an
``edgekit serve`` endpoint (an Open Inference Protocol client) plugs in the same way.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Outcome:
    request_id: int
    image: int
    started: float  # time.monotonic()
    ended: float
    logits: np.ndarray | None
    error: BaseException | None


@dataclass
class LoadRun:
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    duplicates: list[int] = field(default_factory=list)
    finished: int = 0
    started: float = 0.0
    ended: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def wall_s(self) -> float:
        return self.ended - self.started


def run_load(
    send: Callable[[int, np.ndarray], np.ndarray],
    images: np.ndarray,
    clients: int = 8,
    total: int = 2000,
    seconds: float = 180.0,
    on_progress: Callable[[int], None] | None = None,
) -> LoadRun:
    """``total`` requests over ``clients`` threads, request i sends image i % len(images); bounded by ``seconds``."""
    run = LoadRun(started=time.monotonic())
    ids = itertools.count()
    stop_at = run.started + seconds

    def client() -> None:
        while time.monotonic() < stop_at:
            request_id = next(ids)
            if request_id >= total:
                return
            image = request_id % len(images)
            began = time.monotonic()
            logits, error = None, None
            try:
                logits = send(request_id, images[image : image + 1])
            except Exception as exc:  # noqa: BLE001 -- kept and asserted on by the caller
                error = exc
            outcome = Outcome(request_id, image, began, time.monotonic(), logits, error)
            with run.lock:
                if request_id in run.outcomes:
                    run.duplicates.append(request_id)
                run.outcomes[request_id] = outcome
                run.finished += 1
                done = run.finished
            if on_progress:
                on_progress(done)

    threads = [threading.Thread(target=client, name=f"client-{i}", daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, stop_at - time.monotonic()) + 30.0)
    run.ended = time.monotonic()
    return run
