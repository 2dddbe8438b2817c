"""Wall-clock latency of a callable: warm-up, then every sample kept; or what a device's own tool reported."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ToolSummary:
    """What a device's own benchmark tool printed when it keeps no per-run times (LiteRT's ``benchmark_model``
    prints count / avg / std / min / max and, in newer builds, p5 / median / p95; ExecuTorch's ``executor_runner``
    only the total over its runs). Statistics it did not print stay unknown rather than invented."""

    tool: str
    runs: int
    mean_ms: float
    stdev_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    percentiles: tuple[tuple[float, float], ...] = ()  # (q, ms) exactly as printed

    def to_json(self) -> dict[str, object]:
        return {
            "tool": self.tool, "runs": self.runs, "mean_ms": self.mean_ms, "stdev_ms": self.stdev_ms,
            "min_ms": self.min_ms, "max_ms": self.max_ms, "percentiles": [list(p) for p in self.percentiles],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> ToolSummary:
        def opt(key: str) -> float | None:
            return None if data.get(key) is None else float(data[key])

        return cls(str(data["tool"]), int(data["runs"]), float(data["mean_ms"]), opt("stdev_ms"), opt("min_ms"),
                   opt("max_ms"), tuple((float(q), float(v)) for q, v in data.get("percentiles") or ()))  # fmt: skip


@dataclass(frozen=True)
class LatencyStats:
    """Every timed run (``samples_ms``), or, from a tool that keeps none, the summary it printed. A statistic
    neither gives is NaN (rendered as "-", written to JSON as null)."""

    samples_ms: tuple[float, ...]
    reported: ToolSummary | None = None

    @property
    def runs(self) -> int:
        return len(self.samples_ms) if self.samples_ms or self.reported is None else self.reported.runs

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms) if self.samples_ms else self.percentile(50)

    @property
    def mean(self) -> float:
        if self.samples_ms:
            return statistics.fmean(self.samples_ms)
        return self.reported.mean_ms if self.reported else math.nan

    @property
    def stdev(self) -> float:
        if self.samples_ms:
            return statistics.stdev(self.samples_ms) if len(self.samples_ms) > 1 else 0.0
        return _known(self.reported.stdev_ms if self.reported else None)

    @property
    def min(self) -> float:
        return min(self.samples_ms) if self.samples_ms else _known(self.reported.min_ms if self.reported else None)

    @property
    def max(self) -> float:
        return max(self.samples_ms) if self.samples_ms else _known(self.reported.max_ms if self.reported else None)

    def percentile(self, q: float) -> float:
        if self.samples_ms:
            return float(np.percentile(self.samples_ms, q))
        printed = dict(self.reported.percentiles) if self.reported else {}
        return _known(printed.get(float(q)))


def _known(value: float | None) -> float:
    return math.nan if value is None else value


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
