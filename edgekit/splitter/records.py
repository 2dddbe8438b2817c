"""What one split request did, as typed values: every attempt on a worker, the call that answered each shard,
and the request as a whole (served, degraded or failed with a named error)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# How an attempt on a worker ended.
ANSWERED = "answered"  # its answer was used
FAILED = "failed"  # an error, a timeout or a malformed answer: the worker was marked down
CANCELLED = "cancelled"  # another attempt answered first (a lost hedge race, or the request ended)


@dataclass(frozen=True)
class Attempt:
    shard: str
    worker: str
    sent_s: float  # on the coordinator's clock (time.perf_counter)
    ended_s: float
    outcome: str  # ANSWERED, FAILED or CANCELLED
    hedge: bool  # sent because the attempt before it was slow, not because it failed
    reason: str = ""  # why it failed

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ShardCall:
    """The attempt that answered a shard, with what it cost."""

    shard: str
    worker: str
    compute_ms: float  # inside the worker's runtime
    round_trip_ms: float  # as seen by the coordinator
    bytes_sent: int
    bytes_received: int
    retries: int = 0  # attempts on this shard that failed before one answered
    hedges: int = 0  # extra attempts sent because an earlier one was slow
    hedge_won: bool = False  # the answer came from a hedge

    @property
    def overhead_ms(self) -> float:
        """Network, serialisation and gRPC time: the round trip minus the worker's compute."""
        return max(0.0, self.round_trip_ms - self.compute_ms)

    def to_row(self) -> dict[str, Any]:
        """The per-worker row ``SplitEvaluation.per_worker`` gives (here for a single call)."""
        return {
            "worker": self.worker, "shards": [self.shard], "calls": 1, "compute_ms": self.compute_ms,
            "round_trip_ms": self.round_trip_ms, "overhead_ms": self.overhead_ms, "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
        }  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "overhead_ms": self.overhead_ms}


@dataclass(frozen=True)
class RequestRecord:
    """One request: which worker served each shard and at what cost, retries, hedges, degraded or failed."""

    request_id: int
    started_s: float  # on the coordinator's clock (time.perf_counter)
    latency_ms: float
    calls: tuple[ShardCall, ...]  # one per shard that answered
    attempts: tuple[Attempt, ...]  # every call sent, in the order sent
    missing: tuple[str, ...] = ()  # shards left out (degraded)
    error: str = ""  # the named error the caller got; empty when answered
    prediction: int | None = None  # the fused class of the first sample, when answered

    @property
    def degraded(self) -> bool:
        return bool(self.missing)

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def retries(self) -> int:
        return sum(1 for a in self.attempts if a.outcome == FAILED)

    @property
    def hedges(self) -> int:
        return sum(1 for a in self.attempts if a.hedge)

    @property
    def hedge_wins(self) -> int:
        return sum(1 for c in self.calls if c.hedge_won)

    @property
    def bytes_sent(self) -> int:
        return sum(c.bytes_sent for c in self.calls)

    @property
    def bytes_received(self) -> int:
        return sum(c.bytes_received for c in self.calls)

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id, "started_s": self.started_s, "latency_ms": self.latency_ms,
            "degraded": self.degraded, "missing": list(self.missing), "error": self.error,
            "prediction": self.prediction, "retries": self.retries, "hedges": self.hedges,
            "hedge_wins": self.hedge_wins, "calls": [c.to_json() for c in self.calls],
            "attempts": [a.to_json() for a in self.attempts],
        }  # fmt: skip
