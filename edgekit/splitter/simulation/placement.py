"""Replica placement over a fleet: every shard of every plan on up to K distinct devices, within each device's slots.

The policy is the one a coordinator can apply without knowing the future: place the plans' shards in order, each
replica in a failure domain (a switch, a power strip) holding no other replica of the shard if domains are given,
then on a device holding no other shard of the same plan if there is one (two shards of one request on one
device run one after the other, and one crash takes both), then on the device holding the fewest replicas so far,
ties broken by a fresh seeded draw (a fixed order would pair the same devices again and again, so one device's
death would put all its load on one other). Never two replicas of one shard on one device (they would die
together) and never beyond a device's slots (how many shard bundles its memory holds). A shard that cannot get K
distinct devices gets as many as exist, and the placement says which and why, as ``edgekit split --replicas``
reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgekit.errors import ConfigError

ShardKey = tuple[int, int]  # (plan, shard index within the plan)


@dataclass(frozen=True)
class Placement:
    replicas: dict[ShardKey, tuple[int, ...]]  # shard -> its devices, in placement order
    short: tuple[tuple[ShardKey, str], ...]  # shards with fewer than K replicas, and why
    devices: int

    def load(self) -> np.ndarray:
        """Replicas held per device."""
        held = np.zeros(self.devices, dtype=int)
        for devices in self.replicas.values():
            held[list(devices)] += 1
        return held

    def shards_on(self, device: int) -> list[ShardKey]:
        return [key for key, devices in self.replicas.items() if device in devices]


def place(
    plans: int,
    shards: int,
    devices: int,
    replicas: int,
    slots: int,
    rng: np.random.Generator,
    domains: Sequence[int] | None = None,
) -> Placement:
    """``domains``: each device's failure domain; given, a shard's replicas go to different domains first."""
    if min(plans, shards, devices, replicas, slots) < 1:
        raise ConfigError("placement needs at least one plan, shard, device, replica and slot")
    held = np.zeros(devices, dtype=int)
    plans_on: list[set[int]] = [set() for _ in range(devices)]
    placed: dict[ShardKey, tuple[int, ...]] = {}
    short = []
    for plan in range(plans):
        for shard in range(shards):
            chosen: list[int] = []
            for _ in range(replicas):
                free = [d for d in range(devices) if held[d] < slots and d not in chosen]
                if not free:
                    break
                rank = rng.permutation(devices)  # drawn per choice: a fixed order would pair the same devices again
                taken = {domains[c] for c in chosen} if domains is not None else set()
                best = min(free, key=lambda d: (domains is not None and domains[d] in taken, plan in plans_on[d],
                                                held[d], rank[d]))  # fmt: skip
                chosen.append(best)
                held[best] += 1
                plans_on[best].add(plan)
            if not chosen:
                raise ConfigError(f"plan {plan} shard {shard}: no device has a free slot ({devices} x {slots} slots)")
            if len(chosen) < replicas:
                why = "fewer devices than replicas" if devices < replicas else "every other device's slots are full"
                short.append(((plan, shard), f"{len(chosen)} of {replicas} replicas: {why}"))
            placed[(plan, shard)] = tuple(chosen)
    return Placement(placed, tuple(short), devices)
