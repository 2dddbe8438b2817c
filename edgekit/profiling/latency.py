"""Wall-clock latency of a callable: warm-up, then every sample kept."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    samples_ms: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples_ms)

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.samples_ms) if len(self.samples_ms) > 1 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.samples_ms, q))


def measure(fn: Callable[[], object], runs: int = 30, warmup: int = 5, min_seconds: float = 0.0) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then at least ``runs`` times (and ``min_seconds`` long) timed."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return LatencyStats(tuple(samples))
