"""``--strategy auto``: edvit or pipeline, chosen from each one's estimate for the given devices and links.

Both estimates start from the same measurement (each part of the trained model timed on the planning host,
``pipeline.chain_cost``) scaled to each device by its matmul throughput, with the bytes over each link's rate:

- pipeline: the dynamic programme's cut points (``pipeline_cuts.plan_cuts``): one request crosses every stage
  in turn; a stream runs at its busiest stage.
- edvit: every device runs a sub-model of at most 1/N of the full model's parameters on every input (its
  compute taken as 1/N of the full model's, the pruning's own budget) and sends back a feature vector; one
  request takes the slowest device, and so does each input of a stream.

The choice is the lower estimated single-request latency (the case a camera asking one question at a time
is in); a strategy that refuses the model or the devices is not a candidate. The reason, with both estimates,
goes into the plan's report under ``auto``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from edgekit.errors import EdgekitError
from edgekit.models.spec import ModelSpec
from edgekit.splitter.classwise import ClasswiseStrategy
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.pipeline import PipelineStrategy, chain_cost
from edgekit.splitter.pipeline_cuts import ChainCost, link_ms, plan_cuts
from edgekit.splitter.plan import SplitPlan
from edgekit.splitter.strategy import SplitJob, SplitSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Estimate:
    strategy: str
    latency_ms: float  # one request alone
    throughput_per_s: float  # a stream, every stage busy
    refused: str | None = None  # why this strategy cannot plan these devices

    def to_json(self) -> dict:
        return {"latency_ms": round(self.latency_ms, 4), "throughput_per_s": round(self.throughput_per_s, 2),
                "refused": self.refused}  # fmt: skip


def edvit_estimate(cost: ChainCost, devices: Sequence[DeviceSpec], feature_bytes: int) -> Estimate:
    full_host = cost.embed_ms + sum(cost.block_ms) + cost.head_ms
    busy = [
        (full_host / len(devices) + cost.hop_ms) * cost.host_gflops / d.gflops
        + link_ms(cost.input_bytes, d) + link_ms(feature_bytes, d)
        for d in devices
    ]  # fmt: skip
    return Estimate("edvit", max(busy), 1e3 / max(busy))


def pipeline_estimate(cost: ChainCost, devices: Sequence[DeviceSpec]) -> Estimate:
    cuts = plan_cuts(cost, devices)
    return Estimate("pipeline", cuts.latency_ms, cuts.throughput_per_s)


def choose(estimates: Sequence[Estimate]) -> tuple[str, str]:
    """(strategy, why) from the candidates' estimates."""
    candidates = [e for e in estimates if e.refused is None]
    best = min(candidates, key=lambda e: e.latency_ms)
    others = "; ".join(
        f"{e.strategy} refused: {e.refused}" if e.refused else
        f"{e.strategy} {e.latency_ms:.2f} ms, {e.throughput_per_s:.0f}/s on a stream"
        for e in estimates if e is not best
    )  # fmt: skip
    why = (f"{best.strategy}: lowest estimated latency for one request, {best.latency_ms:.2f} ms "
           f"({best.throughput_per_s:.0f}/s on a stream); {others}")  # fmt: skip
    return best.strategy, why


class AutoStrategy:
    name = "auto"
    description = "edvit or pipeline, whichever the estimates say answers one request sooner on these devices"

    def __init__(self):
        self.rows = {s.name: s for s in (ClasswiseStrategy(), PipelineStrategy())}

    def check(self, spec: ModelSpec, devices: Sequence[DeviceSpec], settings: SplitSettings) -> None:
        self.rows["pipeline"].check(spec, devices, settings)  # the fallback must be able to plan

    def plan(self, job: SplitJob) -> SplitPlan:
        job.notify("estimating edvit and pipeline for these devices")
        cost = chain_cost(job.spec)
        width = int(job.spec.module.pos_embed.shape[-1])
        estimates = [edvit_estimate(cost, job.devices, 4 * width), pipeline_estimate(cost, job.devices)]
        try:
            self.rows["edvit"].check(job.spec, job.devices, job.settings)
        except EdgekitError as exc:
            estimates[0] = replace(estimates[0], refused=str(exc))
        chosen, why = choose(estimates)
        log.info("auto strategy: %s", why)
        job.notify(f"auto: {why}")
        plan = self.rows[chosen].plan(job)
        auto = {"chosen": chosen, "why": why, "estimates": {e.strategy: e.to_json() for e in estimates}}
        return replace(plan, report={**plan.report, "auto": auto})
