"""The cost and failure models the simulation draws from: measured shard calls, resampled, plus stated assumptions.

``MeasuredCosts`` reads the JSON that ``benchmarks/shard_latency.py`` writes (real workers, a real tiny plan) and
resamples it: a shard call draws one *measured call* (its compute and its round trip together, so that the
network part keeps its relation to the compute), and a request draws one measured coordinator CPU cost. Nothing
is fitted; the empirical distribution is used as it is.

What cannot be measured on one machine is an assumption with a name: ``SlowDevices`` (a fraction of devices whose
compute is multiplied by a fixed factor and a Pareto tail, the straggler a thermally throttled or busy board is)
and ``FailureModel`` (crashes as a Poisson process per device with a given MTBF, down for a reboot time, and
whether the crash is seen at once -- a connection reset -- or only when a call times out -- power lost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.errors import ConfigError
from edgekit.jsonio import read_json


@dataclass(frozen=True)
class ShardSamples:
    """One measured shard: its calls' compute and round trip in milliseconds, index-aligned."""

    shard: str
    format: str
    compute_ms: np.ndarray = field(repr=False)
    round_trip_ms: np.ndarray = field(repr=False)
    bytes_sent: int = 0
    bytes_received: int = 0

    def __post_init__(self) -> None:
        if len(self.compute_ms) == 0 or len(self.compute_ms) != len(self.round_trip_ms):
            raise ConfigError(f"shard {self.shard}: compute and round-trip samples must be non-empty and paired")

    @property
    def network_ms(self) -> np.ndarray:
        """What a call costs outside the runtime: gRPC, serialisation, the loopback hop."""
        return np.maximum(0.0, self.round_trip_ms - self.compute_ms)


@dataclass(frozen=True)
class MeasuredCosts:
    cpu: str  # the CPU the samples were measured on
    shards: tuple[ShardSamples, ...]
    coordinator_cpu_ms: np.ndarray = field(repr=False)  # per request, for len(shards) shard calls
    restart_s: np.ndarray = field(repr=False)  # worker process start -> ready with its stored shards
    end_to_end_ms: np.ndarray = field(repr=False)

    @classmethod
    def load(cls, path: str | Path) -> MeasuredCosts:
        data = read_json(Path(path))
        try:
            shards = tuple(
                ShardSamples(s["shard"], s["format"], np.asarray(s["compute_ms"], float),
                             np.asarray(s["round_trip_ms"], float), int(s["bytes_sent"]), int(s["bytes_received"]))
                for s in data["shards"]
            )  # fmt: skip
            arrays = (np.asarray(data[k], float) for k in ("coordinator_cpu_ms", "restart_seconds", "end_to_end_ms"))
            return cls(str(data["cpu"]), shards, *arrays)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a shard latency record from benchmarks/shard_latency.py ({exc})") from None

    @classmethod
    def constant(cls, compute_ms: float, network_ms: float, cpu_ms: float, shards: int = 3) -> MeasuredCosts:
        """Every call costs the same: the model in which nothing straggles (for tests and what-ifs)."""
        one = np.array([compute_ms])
        samples = tuple(ShardSamples(f"s{i}", "none", one, one + network_ms) for i in range(shards))
        return cls("none (constant)", samples, np.array([cpu_ms]), np.array([1.0]), np.array([compute_ms]))

    def call_cost_ms(self, rng: np.random.Generator, kind: int) -> tuple[float, float]:
        """(compute, network) of one call of measured shard ``kind``, drawn as one measured pair."""
        shard = self.shards[kind % len(self.shards)]
        i = int(rng.integers(len(shard.compute_ms)))
        compute = float(shard.compute_ms[i])
        return compute, max(0.0, float(shard.round_trip_ms[i]) - compute)

    def cpu_per_call_ms(self, rng: np.random.Generator) -> float:
        """The coordinator's CPU for one shard call (send + receive): a measured request's cost over its calls."""
        return float(self.coordinator_cpu_ms[int(rng.integers(len(self.coordinator_cpu_ms)))]) / len(self.shards)


@dataclass(frozen=True)
class SlowDevices:
    """A fraction of devices straggle: compute x ``factor`` x a Pareto(``tail``) draw per call (>= 1)."""

    fraction: float = 0.0
    factor: float = 4.0
    tail: float = 1.5  # Pareto shape: smaller is heavier; 1.5 has a finite mean (3) and an infinite variance

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0 or self.factor < 1.0 or self.tail <= 1.0:
            raise ConfigError("slow devices: fraction in [0, 1], factor >= 1, tail shape > 1")

    def multiplier(self, rng: np.random.Generator) -> float:
        return self.factor * float((1.0 - rng.random()) ** (-1.0 / self.tail))


@dataclass(frozen=True)
class FailureModel:
    """Per device: up for an exponential time of mean ``mtbf_s``, then down for ``reboot_s`` plus a measured
    worker restart; a crash is ``silent`` (no reset reaches the coordinator) with probability ``silent``."""

    mtbf_s: float = float("inf")
    reboot_s: float = 30.0
    silent: float = 0.5

    def __post_init__(self) -> None:
        if self.mtbf_s <= 0 or self.reboot_s < 0 or not 0.0 <= self.silent <= 1.0:
            raise ConfigError("failures: MTBF > 0, reboot >= 0, silent fraction in [0, 1]")

    @property
    def enabled(self) -> bool:
        return np.isfinite(self.mtbf_s)

    @property
    def down_fraction(self) -> float:
        """The long-run share of time a device is down (ignoring the short worker restart)."""
        return self.reboot_s / (self.mtbf_s + self.reboot_s) if self.enabled else 0.0

    def time_to_crash(self, rng: np.random.Generator) -> float:
        return float(rng.exponential(self.mtbf_s)) if self.enabled else float("inf")
