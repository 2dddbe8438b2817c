"""Energy per node over a run: each worker's cumulative meter total (its ``Energy`` RPC) read at the run's start
and at its end, the difference being the node's joules.

A node without a meter, one that could not be reached at either end, or one that restarted in between (its
total started again) has no energy: the reason is kept and the report shows none, never a made-up number.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgekit.profiling.energy.totalizer import EnergyTotal
from edgekit.splitter.wire import proto

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeEnergy:
    meter: str | None  # None: nothing measured (``reason`` says why)
    joules: float | None
    seconds: float | None  # the window on the worker's clock
    reason: str = ""

    @property
    def mean_watts(self) -> float | None:
        return self.joules / self.seconds if self.joules is not None and self.seconds else None

    def to_json(self) -> dict[str, Any]:
        watts = self.mean_watts
        return {"meter": self.meter, "joules": None if self.joules is None else round(self.joules, 6),
                "seconds": None if self.seconds is None else round(self.seconds, 6),
                "mean_watts": None if watts is None else round(watts, 6), "reason": self.reason}  # fmt: skip


def read_totals(stubs: Mapping[str, Any], timeout: float) -> dict[str, EnergyTotal]:
    """Every worker's total, asked in parallel; a worker that does not answer gets a reason instead."""
    import grpc

    pb = proto()[0]
    calls = {d: stub.Energy.future(pb.EnergyRequest(), timeout=timeout) for d, stub in stubs.items()}
    totals = {}
    for device, call in calls.items():
        try:
            r = call.result()
        except grpc.RpcError as exc:
            why = "its edgekit predates the Energy call" if exc.code() == grpc.StatusCode.UNIMPLEMENTED else None
            totals[device] = EnergyTotal(reason=why or f"energy not read: {exc.code().name} {exc.details() or ''}")
            log.info("worker %s: %s", device, totals[device].reason)
            continue
        totals[device] = EnergyTotal(r.meter, r.joules, r.seconds, r.since_unix_ns, r.reason)
    return totals


def between(start: Mapping[str, EnergyTotal], end: Mapping[str, EnergyTotal]) -> dict[str, NodeEnergy]:
    """Each worker's energy from its total at ``start`` to its total at ``end``."""
    energy = {}
    for device in dict.fromkeys([*start, *end]):
        a, b = start.get(device, EnergyTotal(reason="not read at the start")), end.get(device)
        b = b or EnergyTotal(reason="not read at the end")
        if not a.meter or not b.meter:
            energy[device] = NodeEnergy(None, None, None, a.reason if not a.meter else b.reason)
        elif a.since_unix_ns != b.since_unix_ns or a.meter != b.meter:
            energy[device] = NodeEnergy(b.meter, None, None, "the worker restarted during the run")
        else:
            energy[device] = NodeEnergy(b.meter, b.joules - a.joules, b.seconds - a.seconds)
    return energy
