"""One report per run of a split plan, from its request records: accuracy when labels are given, end-to-end and
per-worker latency percentiles, throughput, bytes each way, retries and hedges, and energy per worker where
the worker has a meter (``node_energy.py``: its running total read at the run's start and end) -- JSON for
machines (the CLI renders the table, ``timeline.py`` draws the attempts per worker).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.splitter.hedging import HedgePolicy
from edgekit.splitter.node_energy import NodeEnergy
from edgekit.splitter.records import ANSWERED, CANCELLED, FAILED, RequestRecord


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p90: float
    p99: float
    count: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Percentiles | None:
        if not samples:
            return None
        p50, p90, p99 = (float(v) for v in np.percentile(np.asarray(samples, np.float64), [50, 90, 99]))
        return cls(round(p50, 4), round(p90, 4), round(p99, 4), len(samples))

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class NodeStats:
    worker: str
    address: str
    answered: int  # calls whose answer was used
    failed: int
    cancelled: int  # lost a hedge race or outlived the request
    hedges_sent: int  # hedges this worker received
    hedge_wins: int  # of those, answered first
    round_trip_ms: Percentiles | None
    compute_ms: Percentiles | None
    bytes_sent: int  # to the worker, answered calls
    bytes_received: int
    energy: NodeEnergy | None = None  # None: not asked (a run without the workers' totals)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("round_trip_ms", "compute_ms", "energy"):
            data[key] = data[key].to_json() if data[key] else None
        return data


@dataclass(frozen=True)
class RunReport:
    requests: int
    answered: int
    errors: int
    degraded: int
    accuracy: float | None  # over every labelled request (an error counts as wrong)
    wall_s: float
    throughput_rps: float
    latency_ms: Percentiles | None  # end to end, answered requests
    retries: int
    hedges: int
    hedge_wins: int
    bytes_sent: int
    bytes_received: int
    hedge_policy: str
    rejoins: int
    nodes: tuple[NodeStats, ...]
    error_messages: dict[str, int] = field(default_factory=dict)  # message -> how many requests got it
    records: tuple[RequestRecord, ...] = field(default=(), repr=False)

    def to_json(self, with_records: bool = True) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("records", "nodes", "latency_ms")}
        data["latency_ms"] = self.latency_ms.to_json() if self.latency_ms else None
        data["nodes"] = [n.to_json() for n in self.nodes]
        if with_records:
            data["records"] = [r.to_json() for r in self.records]
        return data


def build_report(
    records: Sequence[RequestRecord],
    wall_s: float,
    labels: Sequence[int] | np.ndarray | None = None,
    workers: Mapping[str, str] | None = None,
    hedge: HedgePolicy | None = None,
    rejoins: int = 0,
    energy: Mapping[str, NodeEnergy] | None = None,
) -> RunReport:
    """``labels[i]`` is the class of ``records[i]``'s first sample; ``workers``: name -> address (lanes);
    ``energy``: worker -> its energy over the run (``node_energy.between``)."""
    records = tuple(records)
    answered = [r for r in records if r.ok]
    accuracy = None
    if labels is not None and len(records):
        correct = sum(int(r.ok and r.prediction == int(label)) for r, label in zip(records, labels, strict=True))
        accuracy = correct / len(records)
    names = dict(workers or {})
    for r in records:
        for a in r.attempts:
            names.setdefault(a.worker, "")
    errors: dict[str, int] = {}
    for r in records:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    return RunReport(
        requests=len(records), answered=len(answered), errors=len(records) - len(answered),
        degraded=sum(r.degraded for r in answered), accuracy=accuracy, wall_s=round(wall_s, 4),
        throughput_rps=round(len(answered) / wall_s, 3) if wall_s > 0 else 0.0,
        latency_ms=Percentiles.of([r.latency_ms for r in answered]), retries=sum(r.retries for r in records),
        hedges=sum(r.hedges for r in records), hedge_wins=sum(r.hedge_wins for r in records),
        bytes_sent=sum(r.bytes_sent for r in answered), bytes_received=sum(r.bytes_received for r in answered),
        hedge_policy=hedge.label if hedge else "off", rejoins=rejoins,
        nodes=tuple(_node(name, address, records, (energy or {}).get(name)) for name, address in names.items()),
        error_messages=errors,
        records=records,
    )  # fmt: skip


def _node(worker: str, address: str, records: Sequence[RequestRecord], energy: NodeEnergy | None) -> NodeStats:
    calls = [c for r in records for c in r.calls if c.worker == worker]
    attempts = [a for r in records for a in r.attempts if a.worker == worker]
    return NodeStats(
        worker=worker, address=address, answered=len(calls),
        failed=sum(a.outcome == FAILED for a in attempts), cancelled=sum(a.outcome == CANCELLED for a in attempts),
        hedges_sent=sum(a.hedge for a in attempts), hedge_wins=sum(a.hedge and a.outcome == ANSWERED for a in attempts),
        round_trip_ms=Percentiles.of([c.round_trip_ms for c in calls]),
        compute_ms=Percentiles.of([c.compute_ms for c in calls]),
        bytes_sent=sum(c.bytes_sent for c in calls), bytes_received=sum(c.bytes_received for c in calls),
        energy=energy,
    )  # fmt: skip
