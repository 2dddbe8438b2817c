"""Which device runs which sub-model: largest first, onto the device that keeps the slowest finish earliest.

A shard's time on a device is its FLOPs at the device's throughput plus, when the device declares a link
speed, the bytes it receives and sends at that speed. Shards go, in order of decreasing FLOPs, to the
device (among those with the memory left for it) that minimises the latest finish time over all devices,
ties to the device that itself finishes first (the "longest processing time first" rule for machines of
different speeds, within a factor of 2 of the best makespan). A shard that fits no device is an error
naming the shard, the device that came closest and the shortfall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgekit.errors import ConfigError
from edgekit.splitter.devices import DeviceSpec


@dataclass(frozen=True)
class ShardCost:
    name: str
    flops: int
    memory_bytes: int
    transfer_bytes: int = 0  # input sent + features returned, per inference


@dataclass(frozen=True)
class Assignment:
    placement: dict[str, str]  # shard -> device
    finish_ms: dict[str, float]  # device -> estimated busy time per inference
    memory_used: dict[str, int]  # device -> bytes

    @property
    def critical_ms(self) -> float:
        return max(self.finish_ms.values(), default=0.0)


def transfer_ms(shard: ShardCost, device: DeviceSpec) -> float:
    return shard.transfer_bytes * 8 / (device.link_mbps * 1e6) * 1e3 if device.link_mbps else 0.0


def shard_ms(shard: ShardCost, device: DeviceSpec) -> float:
    """FLOPs at the device's matmul throughput plus link time: the cost the assignment balances."""
    return shard.flops / (device.gflops * 1e9) * 1e3 + transfer_ms(shard, device)


def assignment_of(placement: dict[str, str], shards: Sequence[ShardCost], devices: Sequence[DeviceSpec]) -> Assignment:
    """Busy time and memory per device for a given placement (shard -> device)."""
    by_name = {d.name: d for d in devices}
    finish = {d.name: 0.0 for d in devices}
    used = {d.name: 0 for d in devices}
    for shard in shards:
        device = by_name[placement[shard.name]]
        finish[device.name] += shard_ms(shard, device)
        used[device.name] += shard.memory_bytes
    return Assignment(dict(placement), finish, used)


def assign(shards: Sequence[ShardCost], devices: Sequence[DeviceSpec]) -> Assignment:
    if not devices:
        raise ConfigError("no devices to assign sub-models to")
    finish = {d.name: 0.0 for d in devices}
    used = {d.name: 0 for d in devices}
    placement: dict[str, str] = {}
    for shard in sorted(shards, key=lambda s: (-s.flops, -s.memory_bytes, s.name)):
        fitting = [d for d in devices if used[d.name] + shard.memory_bytes <= d.memory_bytes]
        if not fitting:
            closest = max(devices, key=lambda d: d.memory_bytes - used[d.name])
            free = closest.memory_bytes - used[closest.name]
            raise ConfigError(
                f"sub-model {shard.name} needs {shard.memory_bytes / 1e6:.2f} MB but no device has that much left: "
                f"the most is {free / 1e6:.2f} MB on {closest.name} (short by "
                f"{(shard.memory_bytes - free) / 1e6:.2f} MB); add a device, raise a memory budget or split into "
                "more sub-models"
            )

        best = min(fitting, key=lambda d: _outcome(shard, d, finish, devices))
        placement[shard.name] = best.name
        finish[best.name] += shard_ms(shard, best)
        used[best.name] += shard.memory_bytes
    return assignment_of(placement, shards, devices)


def _outcome(shard: ShardCost, device: DeviceSpec, finish: dict[str, float], devices: Sequence[DeviceSpec]):
    """Sort key of placing ``shard`` on ``device``: the latest finish overall, then its own, then file order."""
    own = finish[device.name] + shard_ms(shard, device)
    latest = max(own, *(t for name, t in finish.items() if name != device.name), 0.0)
    return latest, own, devices.index(device)
