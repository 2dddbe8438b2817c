"""Where a layer pipeline cuts a ViT: dynamic programming over measured per-block times and link rates.

The model is a chain of parts (patch embedding, block 0 ... block L-1, norm + head); a stage is a contiguous
run of blocks on one device, the embedding going with the first and the head with the last. Devices keep the
order they are listed in; a device may be left out (more devices than blocks, or one too slow to be worth a
hop). For a stream of inputs each stage's device is busy for its compute, its link for the bytes in and out,
so the pipeline's period is the largest of those; one request takes their sum. The cut points minimise the
period (throughput), among equal periods the latency, and among those the largest stage's compute.
Numbers only: no torch, no network.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from edgekit.errors import ConfigError
from edgekit.splitter.devices import DeviceSpec


@dataclass(frozen=True)
class ChainCost:
    """Per-part cost measured on the planning host, and the bytes between parts."""

    embed_ms: float
    block_ms: tuple[float, ...]
    head_ms: float
    input_bytes: int  # the image, into the first stage
    activation_bytes: int  # the tokens between two blocks
    output_bytes: int  # the logits, out of the last stage
    host_gflops: float  # the planning host's matmul throughput: per-part times scale by it
    hop_ms: float  # one gRPC hop's own work (serialise, send, receive) on the planning host

    @property
    def depth(self) -> int:
        return len(self.block_ms)


@dataclass(frozen=True)
class Stage:
    device: str
    start: int  # first block
    stop: int  # one past the last block
    compute_ms: float  # on its device, this stage's parts plus its hop
    in_ms: float  # its input over the link into it
    out_ms: float  # its output over its link (to the next stage, or back to the caller)
    in_bytes: int
    out_bytes: int

    @property
    def busy_ms(self) -> float:
        """How long one input keeps this stage's scarcest resource busy (device or link)."""
        return max(self.compute_ms, self.in_ms, self.out_ms)


@dataclass(frozen=True)
class PipelineCuts:
    stages: tuple[Stage, ...]

    @property
    def period_ms(self) -> float:
        """Time between two results of a full pipeline: its busiest stage."""
        return max(s.busy_ms for s in self.stages)

    @property
    def latency_ms(self) -> float:
        """One request alone: every stage's compute and every transfer, in turn."""
        return self.stages[0].in_ms + sum(s.compute_ms + s.out_ms for s in self.stages)

    @property
    def throughput_per_s(self) -> float:
        return 1e3 / self.period_ms


def link_ms(nbytes: int, *devices: DeviceSpec) -> float:
    """Transfer time over the slowest of the links it crosses (no declared rate: not a bottleneck)."""
    rates = [d.link_mbps for d in devices if d.link_mbps]
    return nbytes * 8 / (min(rates) * 1e3) if rates else 0.0


def stage_ms(cost: ChainCost, device: DeviceSpec, start: int, stop: int) -> float:
    host = sum(cost.block_ms[start:stop]) + cost.hop_ms
    host += cost.embed_ms if start == 0 else 0.0
    host += cost.head_ms if stop == cost.depth else 0.0
    return host * cost.host_gflops / device.gflops


def plan_cuts(cost: ChainCost, devices: Sequence[DeviceSpec], max_stages: int | None = None) -> PipelineCuts:
    """The cut points that minimise the period, then the latency, over ``devices`` in their order."""
    if not devices:
        raise ConfigError("a pipeline needs at least one device")
    if cost.depth < 1:
        raise ConfigError("a pipeline needs a model with at least one block")
    limit = min(max_stages or len(devices), len(devices), cost.depth)
    n, depth = len(devices), cost.depth

    @functools.cache
    def best(start: int, first_device: int, previous: int, stages_left: int) -> tuple[float, float, tuple] | None:
        """(period, latency, stages) for blocks[start:] on devices[first_device:], fed by ``previous``."""
        options = []
        for d in range(first_device, n):
            device = devices[d]
            sender = devices[previous] if previous >= 0 else None
            in_bytes = cost.input_bytes if start == 0 else cost.activation_bytes
            in_ms = link_ms(in_bytes, device, *([sender] if sender else []))
            for stop in range(start + 1, depth + 1):
                compute = stage_ms(cost, device, start, stop)
                if stop == depth:
                    out_ms = link_ms(cost.output_bytes, device)
                    stage = Stage(device.name, start, stop, compute, in_ms, out_ms, in_bytes, cost.output_bytes)
                    options.append((stage.busy_ms, in_ms + compute + out_ms, (stage,)))
                    continue
                if stages_left <= 1:
                    continue
                rest = best(stop, d + 1, d, stages_left - 1)
                if rest is None:
                    continue
                out_ms = link_ms(cost.activation_bytes, device, devices[next_device(rest)])
                stage = Stage(device.name, start, stop, compute, in_ms, out_ms, in_bytes, cost.activation_bytes)
                # the rest's latency starts with its in_ms, which is this stage's out_ms
                options.append((max(stage.busy_ms, rest[0]), in_ms + compute + rest[1], (stage, *rest[2])))
        # ties (a link-bound period, the same latency for any cut) go to the most even compute
        return min(options, key=lambda o: (round(o[0], 6), round(o[1], 6), max(s.compute_ms for s in o[2])),
                   default=None)  # fmt: skip

    def next_device(rest: tuple) -> int:
        return next(i for i, d in enumerate(devices) if d.name == rest[2][0].device)

    found = best(0, 0, -1, limit)
    if found is None:  # cannot happen with at least one device and one block
        raise ConfigError("no pipeline fits these devices")
    return PipelineCuts(found[2])
