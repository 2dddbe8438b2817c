"""A discrete-event simulation of split serving over a fleet (placement, failover, hedging), numpy only.

``MeasuredCosts.load(benchmarks/data/shard_latency.json)`` gives the measured shard calls; ``Scenario`` the fleet,
load and failure assumptions; ``Policy`` the replica count and hedging; ``Simulation(...).run()`` one seeded run.
``benchmarks/scaling_sim.py`` runs the policies over seeds and prints the table; ``docs/scaling.md`` reads it.
"""

from __future__ import annotations

from edgekit.splitter.simulation.engine import Kill, Policy, Scenario, SimResult, Simulation
from edgekit.splitter.simulation.measured import FailureModel, MeasuredCosts, ShardSamples, SlowDevices
from edgekit.splitter.simulation.placement import Placement, place

__all__ = [
    "FailureModel",
    "Kill",
    "MeasuredCosts",
    "Placement",
    "Policy",
    "Scenario",
    "ShardSamples",
    "SimResult",
    "Simulation",
    "SlowDevices",
    "place",
]
