"""Where each shard's replicas go: up to K devices per shard, within memory, on devices that can run its bundle.

A replica runs the very bundle its primary runs (same bytes, same runtime), so a failover answer is the
answer the primary would have given; a device is a candidate only if it can load the shard's format (its own
``format`` or one listed under ``runtimes:`` in devices.yaml). Shards are taken largest first, and each extra
copy goes to the candidate whose estimated busy time (primaries plus replicas so far, as if every copy were
used) stays lowest, ties in file order. A shard that gets fewer than K copies is reported with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from edgekit.errors import ConfigError
from edgekit.splitter.assign import Assignment, ShardCost, assignment_of, shard_ms
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.plan import ShardPlan, SplitPlan


@dataclass(frozen=True)
class ReplicaPlacement:
    copies: int  # asked for, per shard, the primary included
    replicas: dict[str, tuple[str, ...]]  # shard -> devices holding a copy besides its primary, in order of use
    short: dict[str, str]  # shard -> why it has fewer than the copies asked for
    memory_used: dict[str, int]  # device -> bytes, primaries and replicas

    def to_json(self) -> dict[str, Any]:
        """The plan report's ``replicas`` section."""
        return {"copies": self.copies, "placed": {k: list(v) for k, v in self.replicas.items()},
                "short": dict(self.short), "memory_used": dict(self.memory_used)}  # fmt: skip


def can_run(device: DeviceSpec, fmt: str) -> bool:
    return fmt == device.format or fmt in device.runtimes


def place_replicas(
    shards: Sequence[ShardCost],
    formats: dict[str, str],
    devices: Sequence[DeviceSpec],
    primary: Assignment,
    copies: int,
) -> ReplicaPlacement:
    """Up to ``copies`` devices per shard (its primary included); ``formats`` is each shard's bundle format."""
    if copies < 1:
        raise ConfigError(f"--replicas must be at least 1 (1: no replicas), got {copies}")
    by_name = {d.name: d for d in devices}
    used = dict(primary.memory_used)
    busy = dict(primary.finish_ms)
    replicas: dict[str, tuple[str, ...]] = {s.name: () for s in shards}
    short: dict[str, str] = {}
    for shard in sorted(shards, key=lambda s: (-s.memory_bytes, -s.flops, s.name)):
        holders = [primary.placement[shard.name]]
        others = [d for d in devices if d.name not in holders]
        runnable = [d for d in others if can_run(d, formats[shard.name])]
        while len(holders) < copies:
            fitting = [d for d in runnable if d.name not in holders and used[d.name] + shard.memory_bytes
                       <= d.memory_bytes]  # fmt: skip
            if not fitting:
                short[shard.name] = _why_short(shard, formats[shard.name], others, runnable, holders, used,
                                               len(holders), copies)  # fmt: skip
                break
            best = min(fitting, key=lambda d: (busy[d.name] + shard_ms(shard, d), devices.index(d)))
            holders.append(best.name)
            used[best.name] += shard.memory_bytes
            busy[best.name] += shard_ms(shard, by_name[best.name])
        replicas[shard.name] = tuple(holders[1:])
    return ReplicaPlacement(copies, replicas, short, used)


def replicate(shards: Sequence[ShardPlan], devices: Sequence[DeviceSpec], copies: int
              ) -> tuple[tuple[ShardPlan, ...], ReplicaPlacement]:  # fmt: skip
    """The plan's shards with replicas placed (any earlier replicas are dropped first), and the placement."""
    costs = [ShardCost(s.name, s.flops, s.memory_bytes) for s in shards]
    primary = assignment_of({s.name: s.device for s in shards}, costs, devices)
    placement = place_replicas(costs, {s.name: s.format for s in shards}, devices, primary, copies)
    return tuple(replace(s, replicas=placement.replicas[s.name]) for s in shards), placement


def with_replicas(plan: SplitPlan, copies: int, devices: Sequence[DeviceSpec] | None = None) -> SplitPlan:
    """The same plan (same bundles, same fusion) with each shard on up to ``copies`` devices; ``devices``
    replaces the plan's own (e.g. with ``runtimes`` declared), names unchanged."""
    devices = tuple(devices or plan.devices)
    missing = {s.device for s in plan.shards} - {d.name for d in devices}
    if missing:
        raise ConfigError(f"the devices given lack {sorted(missing)[0]}, which holds a shard of the plan")
    shards, placement = replicate(plan.shards, devices, copies)
    return replace(plan, devices=devices, shards=shards, report={**plan.report, "replicas": placement.to_json()})


def _why_short(shard: ShardCost, fmt: str, others: list[DeviceSpec], runnable: list[DeviceSpec], holders: list[str],
               used: dict[str, int], have: int, copies: int) -> str:  # fmt: skip
    head = f"{have} of {copies} copies"
    if not others:
        return f"{head}: there is no other device"
    if not runnable:
        return (f"{head}: no other device can run {fmt} bundles (list {fmt} under a device's runtimes: in "
                "devices.yaml if it can)")  # fmt: skip
    left = [d for d in runnable if d.name not in holders]
    if not left:
        return f"{head}: every device that can run {fmt} already holds it"
    roomiest = max(left, key=lambda d: d.memory_bytes - used[d.name])
    free = roomiest.memory_bytes - used[roomiest.name]
    return (f"{head}: it needs {shard.memory_bytes / 1e6:.2f} MB; the most left on a device that can run {fmt} is "
            f"{free / 1e6:.2f} MB on {roomiest.name}")  # fmt: skip
