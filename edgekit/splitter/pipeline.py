"""The layer-pipeline strategy (``--strategy pipeline``): contiguous blocks per device, activations passed on.

The baseline exo-style systems use, beside ED-ViT's class-wise split: nothing is pruned or retrained, so the
answer is the full model's. Each part of the model (patch embedding, every block, norm + head) is timed on the
planning host; ``pipeline_cuts.plan_cuts`` scales those times to each device by its matmul throughput (declared
or from its ``device.json``) and picks the cut points by dynamic programming over them and the activation bytes
over each link's rate. Each stage is exported through ``edgekit.export()`` to its device's format (verified
against PyTorch like any export), timed with its runtime here, and pinned in ``plan.json`` by digest; the stage
order is the shard order. At run time (``pipeline_run.py``) the caller sends the input to the first stage and
each worker hands its output to the next itself (``Relay``), so inputs in flight overlap on the stages.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from edgekit import runtimes
from edgekit.errors import UnsupportedOptionError
from edgekit.models.spec import ModelSpec
from edgekit.models.vit import VisionTransformer
from edgekit.profiling.device import matmul_gflops
from edgekit.profiling.latency import measure
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.pipeline_cuts import ChainCost, PipelineCuts, plan_cuts
from edgekit.splitter.plan import ShardPlan, SplitPlan, bundle_digest
from edgekit.splitter.strategy import SplitJob, SplitSettings
from edgekit.types import jsonable

log = logging.getLogger(__name__)

# One unary gRPC hop's own work on the planning host (protobuf, HTTP/2, Python), as measured on loopback with
# these activations (~0.3-0.6 ms on a 2-core Xeon); every stage pays it, in its period and in the latency.
HOP_HOST_MS = 0.5


class StageModule(nn.Module):
    """Blocks ``start:stop`` of a ViT; the first stage also embeds the image, the last also pools and classifies."""

    def __init__(self, vit: VisionTransformer, start: int, stop: int):
        super().__init__()
        self.first, self.last = start == 0, stop == len(vit.blocks)
        if self.first:
            self.patch_embed = copy.deepcopy(vit.patch_embed)
            self.cls_token = copy.deepcopy(vit.cls_token)
            self.pos_embed = copy.deepcopy(vit.pos_embed)
            self.num_patches = vit.num_patches
        self.blocks = copy.deepcopy(vit.blocks[start:stop])
        if self.last:
            self.norm, self.head = copy.deepcopy(vit.norm), copy.deepcopy(vit.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The ViT's own embed / pool, applied to this module's copies of the same parameters: one definition.
        tokens = VisionTransformer.embed(self, x) if self.first else x
        tokens = self.blocks(tokens)
        return self.head(VisionTransformer.pool(self, tokens)) if self.last else tokens


class PipelineStrategy:
    name = "pipeline"
    description = "contiguous blocks per device, activations passed worker to worker (layer pipeline)"

    def check(self, spec: ModelSpec, devices: Sequence[DeviceSpec], settings: SplitSettings) -> None:
        if not isinstance(spec.module, VisionTransformer):
            raise UnsupportedOptionError(
                "model for edgekit split --strategy pipeline", spec.name, ["a ViT of the vit family (vit_digits, ...)"]
            )

    def plan(self, job: SplitJob) -> SplitPlan:
        spec = job.spec
        job.notify("timing each block on this host")
        clock = time.perf_counter()
        cost = chain_cost(spec)
        cuts = plan_cuts(cost, job.devices)
        job.notify(f"{len(cuts.stages)} stages: " + ", ".join(f"{s.device} {s.start}-{s.stop}" for s in cuts.stages))
        shards, stage_specs = export_stages(job, cuts, cost.host_gflops)
        chained = chained_accuracy(job, shards)
        timings = {"train_s": job.train_seconds, "plan_export_s": time.perf_counter() - clock}
        return SplitPlan(
            model={"name": spec.name, "config": jsonable(spec.config), "parameters": spec.parameters,
                   "flops": spec.flops()},
            strategy=self.name,
            partition="layers",
            class_names=tuple(job.split.class_names),
            input={"name": spec.input_names[0], "shape": list(spec.example_inputs[0].shape), "dtype": "float32"},
            devices=job.devices,
            shards=tuple(shards),
            fusion={},  # nothing to fuse: the last stage answers
            report=pipeline_report(job, cost, cuts, shards, chained, timings),
        )  # fmt: skip


def chain_cost(spec: ModelSpec, runs: int = 30) -> ChainCost:
    """Each part of the model timed here with PyTorch on one thread (median of ``runs``), and the bytes between."""
    vit: VisionTransformer = spec.module
    x = spec.example_inputs[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a device runs its stage on its own cores; this host is shared
    try:
        with torch.no_grad():
            tokens = vit.embed(x)
            embed_ms = measure(lambda: vit.embed(x), runs=runs, warmup=5).median
            block_ms = tuple(measure(lambda b=b: b(tokens), runs=runs, warmup=5).median for b in vit.blocks)
            head_ms = measure(lambda: vit.head(vit.pool(tokens)), runs=runs, warmup=5).median
            logits = vit(x)
    finally:
        torch.set_num_threads(threads)
    return ChainCost(
        embed_ms=embed_ms, block_ms=block_ms, head_ms=head_ms, input_bytes=x.numel() * 4,
        activation_bytes=tokens.numel() * 4, output_bytes=logits.numel() * 4, host_gflops=matmul_gflops(),
        hop_ms=HOP_HOST_MS,
    )  # fmt: skip


def stage_spec(full: ModelSpec, index: int, start: int, stop: int) -> ModelSpec:
    vit: VisionTransformer = full.module
    module = StageModule(vit, start, stop).eval()
    if start == 0:
        example, input_name = full.example_inputs, full.input_names[0]
    else:
        with torch.no_grad():
            example = (vit.blocks[:start](vit.embed(full.example_inputs[0])),)
        input_name = "tokens"
    return ModelSpec(
        name=f"{full.name}-stage{index}", family="vit-stage", module=module, example_inputs=example,
        input_names=(input_name,), output_names=("logits",) if module.last else ("tokens_out",),
        config={**full.config, "blocks": [start, stop]}, task="classification" if module.last else "features",
        class_names=full.class_names if module.last else None,
    )  # fmt: skip


def export_stages(job: SplitJob, cuts: PipelineCuts, host_gflops: float) -> tuple[list[ShardPlan], list[ModelSpec]]:
    from edgekit.exporters.pipeline import export

    (job.staging / "shards").mkdir(parents=True, exist_ok=True)
    by_name = {d.name: d for d in job.devices}
    shards, specs = [], []
    for i, stage in enumerate(cuts.stages):
        device = by_name[stage.device]
        spec = stage_spec(job.spec, i, stage.start, stage.stop)
        rel = f"shards/stage{i}-{device.format}"
        job.notify(f"exporting stage{i} (blocks {stage.start}-{stage.stop - 1}) for {device.name} ({device.format})")
        result = export(spec, format=device.format, out_dir=job.staging / rel, samples=job.settings.samples)
        with runtimes.load(job.staging / rel) as runtime:
            sample = spec.example_inputs[0].numpy()
            local_ms = measure(lambda r=runtime, x=sample: r.run(x), runs=30, warmup=5).median
        flops = spec.flops()
        blocks = job.spec.module.blocks[stage.start : stage.stop]
        shards.append(
            ShardPlan(
                name=f"stage{i}", classes=tuple(range(len(job.split.class_names))), device=device.name,
                format=device.format, bundle=rel, digest=bundle_digest(job.staging / rel), keep_ratio=1.0,
                heads=tuple(b.attn.heads for b in blocks), mlp=tuple(b.mlp.fc1.out_features for b in blocks),
                parameters=spec.parameters, size_bytes=result.manifest.total_bytes, flops=flops,
                memory_bytes=4 * spec.parameters + 4 * int(np.prod(spec.example_inputs[0].shape)),
                feature_dim=int(spec.module(*spec.example_inputs).shape[-1]),
                estimated_ms=round(local_ms * host_gflops / device.gflops + stage.in_ms + stage.out_ms, 4),
                bound_ms=round(flops / (device.gflops * 1e9) * 1e3 + stage.in_ms + stage.out_ms, 4),
            )
        )  # fmt: skip
        specs.append(spec)
    return shards, specs


def chained_accuracy(job: SplitJob, shards: Sequence[ShardPlan]) -> float:
    """Held-out accuracy of the exported stages run one after another here, with their runtimes."""
    loaded = [runtimes.load(job.staging / s.bundle) for s in shards]
    try:
        correct = 0
        for x, y in zip(job.split.x_test, job.split.y_test, strict=True):
            value = x[None]
            for runtime in loaded:
                value = next(iter(runtime.run(value).values()))
            correct += int(value.argmax(-1)[0] == y)
    finally:
        for runtime in loaded:
            runtime.close()
    return correct / len(job.split.y_test)


def pipeline_report(job, cost: ChainCost, cuts: PipelineCuts, shards, chained: float, timings) -> dict:
    full_parameters = job.spec.parameters
    return {
        "dataset": job.data,
        "test_samples": len(job.split.y_test),
        "full": {"parameters": full_parameters, "size_bytes": 4 * full_parameters, "accuracy": job.full_accuracy},
        "pipeline": {
            "accuracy": chained,
            "stages": [
                {
                    "shard": sh.name,
                    "device": st.device,
                    "blocks": [st.start, st.stop],
                    "compute_ms": round(st.compute_ms, 4),
                    "in_ms": round(st.in_ms, 4),
                    "out_ms": round(st.out_ms, 4),
                    "in_bytes": st.in_bytes,
                    "out_bytes": st.out_bytes,
                }
                for sh, st in zip(shards, cuts.stages, strict=True)
            ],  # fmt: skip
            "period_ms": round(cuts.period_ms, 4),
            "latency_ms": round(cuts.latency_ms, 4),
            "throughput_per_s": round(cuts.throughput_per_s, 2),
            "largest_shard_fraction": max(s.parameters for s in shards) / full_parameters,
            "total_parameters": sum(s.parameters for s in shards),
            "basis": (
                f"each part timed with PyTorch on one thread of the planning host (median of 30; host matmul "
                f"{cost.host_gflops:.1f} GFLOP/s) scaled by host / device GFLOP/s, plus {HOP_HOST_MS} ms a hop "
                "(scaled the same way) and the bytes over the slower link of each transfer"
            ),
            "part_ms": {
                "embed": round(cost.embed_ms, 4),
                "blocks": [round(b, 4) for b in cost.block_ms],
                "head": round(cost.head_ms, 4),
            },  # fmt: skip
        },
        "timings": timings,
        "settings": jsonable(job.settings.__dict__),
    }
