"""The ED-ViT strategy: class-wise sub-models, pruned and distilled, assigned to devices, fused.

Its stages, after ``plan_split`` has the full model trained, and the choices the paper leaves open (ours):

1. Classes are partitioned into N = number of devices subsets (``partition.py``), 1 <= N <= C; with N = C each
   sub-model answers "my class or other".
2. Each sub-model is cut from the full model by the structure search (``structure_search.py``): residual width,
   blocks, heads, head dimension and MLP neurons removed by a global Taylor ranking measured on the subset's
   training images, until the feature extractor fits its budget: at most ``keep_ratio`` (default 1/N) of the
   full one's parameters, the memory of the device paired with it (subsets and devices both sorted largest
   first) and, with ``latency_ms``, that many milliseconds of FLOPs at the device's GFLOP/s.
3. The sub-model gets a head over its classes plus one "other" logit and is distilled from the full model
   (``distill.py``).
4. Each sub-model's pooled feature vector is what it sends back; a fusion MLP over the concatenated
   features, trained on the training split with whole shards dropped at random, gives all C classes.
5. Shards are placed on devices (``assign.py``), exported to their device's format through the ordinary
   exporter (verified against PyTorch like any export) and pinned in ``plan.json`` by digest; the report
   says what each shard kept (``report.py``); with ``replicas`` > 1 each bundle is also placed on other devices
   that can run it (``replicas.py``).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgekit import runtimes
from edgekit.bundle import sha256_file
from edgekit.data import Split
from edgekit.errors import ConfigError, UnsupportedOptionError
from edgekit.models.spec import ModelSpec
from edgekit.models.vit import VisionTransformer
from edgekit.profiling.device import matmul_gflops
from edgekit.profiling.latency import measure
from edgekit.splitter.assign import Assignment, ShardCost, assign, assignment_of, shard_ms, transfer_ms
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.distill import DistillSettings, distill, subset_accuracy, subset_head
from edgekit.splitter.fuse import FusionHead, train_fusion
from edgekit.splitter.partition import PARTITIONS, partition_classes
from edgekit.splitter.plan import ShardPlan, SplitPlan, bundle_digest
from edgekit.splitter.prune import VitShape, prune_vit, taylor_importance
from edgekit.splitter.replicas import replicate
from edgekit.splitter.report import classwise_report
from edgekit.splitter.strategy import SplitJob, SplitSettings
from edgekit.splitter.structure_search import Budget, SearchResult, search_structure
from edgekit.types import jsonable

log = logging.getLogger(__name__)


class ShardFeatures(nn.Module):
    """What a worker runs: the sub-model up to its pooled feature vector."""

    def __init__(self, vit: VisionTransformer):
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.features(x)


@dataclass(frozen=True)
class SubModels:
    """The distilled sub-models of one partition, with the structures kept and held-out subset accuracy."""

    subsets: tuple[tuple[int, ...], ...]
    searches: tuple[SearchResult, ...]
    models: tuple[VisionTransformer, ...]
    accuracy: tuple[float, ...]


@dataclass(frozen=True)
class Fusion:
    head: FusionHead
    accuracy: float  # held-out, every shard present
    degraded: dict[str, float]  # held-out, one shard missing (by name); empty for a single shard


class ClasswiseStrategy:
    name = "edvit"
    description = "class-wise pruned sub-models fused by an MLP (ED-ViT)"

    def check(self, spec: ModelSpec, devices: Sequence[DeviceSpec], settings: SplitSettings) -> None:
        if not isinstance(spec.module, VisionTransformer):
            raise UnsupportedOptionError(
                "model for edgekit split", spec.name, ["a ViT of the vit family (vit_digits, ...)"]
            )
        if spec.config.get("attention", "softmax") != "softmax":
            # pruning ranks heads by their softmax outputs and rebuilds plain blocks
            raise UnsupportedOptionError("attention for edgekit split", spec.config["attention"], ["softmax"])
        PARTITIONS.get(settings.partition)
        if settings.replicas < 1:
            raise UnsupportedOptionError("--replicas", settings.replicas, ["1 (no replicas) or more"])
        if not 1 <= len(devices) <= spec.module.head.out_features:
            raise ConfigError(
                f"cannot split {spec.module.head.out_features} classes over {len(devices)} devices "
                "(one sub-model per device, each with at least one class)"
            )
        shard_budgets(VitShape.of(spec.module), len(devices), devices, settings)

    def plan(self, job: SplitJob) -> SplitPlan:
        spec, split, settings = job.spec, job.split, job.settings
        timings = {"train_s": job.train_seconds}
        clock = time.perf_counter()
        subs = build_submodels(job)
        timings["finetune_s"] = time.perf_counter() - clock

        job.notify("training the fusion head")
        clock = time.perf_counter()
        fusion = fuse(subs.models, split, settings)
        timings["fusion_s"] = time.perf_counter() - clock
        log.info("fused %d sub-models: %.2f%% held-out (full model %.2f%%)", len(subs.models), 100 * fusion.accuracy,
                 100 * job.full_accuracy)  # fmt: skip

        shape = VitShape.of(spec.module)
        full_flops = spec.flops()
        input_bytes = int(np.prod(spec.example_inputs[0].shape)) * 4
        specs = [_shard_spec(spec, sub, i) for i, sub in enumerate(subs.models)]
        costs = [
            ShardCost(f"shard{i}", s.flops(), shape.memory_bytes(subs.searches[i].structure),
                      input_bytes + sub.pos_embed.shape[-1] * 4)
            for i, (s, sub) in enumerate(zip(specs, subs.models, strict=True))
        ]  # fmt: skip
        assignment = _assign(costs, job.devices)

        clock = time.perf_counter()
        host_gflops = matmul_gflops()
        shards, busy = _export_shards(job, subs, specs, costs, assignment, host_gflops)
        shards, replication = replicate(shards, job.devices, settings.replicas)
        timings["export_s"] = time.perf_counter() - clock
        fusion.head.save(job.staging / "fusion.npz")

        report = classwise_report(
            job, full_features=shape.parameters(shape.full()), full_flops=full_flops, fused_accuracy=fusion.accuracy,
            degraded=fusion.degraded, sub_accuracy=subs.accuracy, shards=shards, busy=busy, host_gflops=host_gflops,
            assignment=assignment, timings=timings, searches=subs.searches, full_structure=shape.full(),
        )  # fmt: skip
        report["replicas"] = replication.to_json()
        return SplitPlan(
            model={"name": spec.name, "config": jsonable(spec.config), "parameters": spec.parameters,
                   "flops": full_flops},
            strategy=self.name,
            partition=settings.partition,
            class_names=tuple(split.class_names),
            input={"name": spec.input_names[0], "shape": list(spec.example_inputs[0].shape), "dtype": "float32"},
            devices=job.devices,
            shards=tuple(shards),
            fusion={"file": "fusion.npz", "sha256": sha256_file(job.staging / "fusion.npz"),
                    "hidden": settings.fusion_hidden, "shard_dropout": settings.shard_dropout},
            report=report,
        )  # fmt: skip


def build_submodels(job: SplitJob) -> SubModels:
    """Partition the classes over the devices, then prune and distil one sub-model per subset."""
    full: VisionTransformer = job.spec.module
    split, settings = job.split, job.settings
    x_train, y_train = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    with torch.no_grad():
        teacher = full(x_train)
    confusion = np.zeros((split.num_classes, split.num_classes), np.int64)
    np.add.at(confusion, (split.y_train, teacher.argmax(-1).numpy()), 1)
    subsets = partition_classes(settings.partition, split.num_classes, len(job.devices), confusion, settings.seed)
    shape = VitShape.of(full)
    budgets = _by_subset(subsets, shard_budgets(shape, len(subsets), job.devices, settings))
    how = DistillSettings(settings.finetune_epochs, settings.lr, settings.temperature, settings.distill_weight,
                          settings.seed)  # fmt: skip
    models, searches, accuracy = [], [], []
    for i, (classes, budget) in enumerate(zip(subsets, budgets, strict=True)):
        sub, search = _make_submodel(full, classes, budget, x_train, y_train)
        kept = shape.parameters(search.structure) / shape.parameters(shape.full())
        job.notify(f"sub-model {i + 1}/{len(subsets)}: classes {list(classes)}, {kept:.1%} of the size, fine-tuning")
        log.info("sub-model %d: classes %s, kept %s (%.1f%% of the parameters; bound by %s)", i, list(classes),
                 search.structure.to_json(), 100 * kept, ", ".join(search.binding) or "nothing")  # fmt: skip
        distill(sub, classes, x_train, y_train, teacher, how)
        models.append(sub)
        searches.append(search)
        accuracy.append(subset_accuracy(sub, classes, split))
    return SubModels(tuple(subsets), tuple(searches), tuple(models), tuple(accuracy))


def fuse(subs: Sequence[VisionTransformer], split: Split, settings: SplitSettings) -> Fusion:
    """Train the fusion head on the sub-models' training-split features; held-out accuracy, whole and degraded."""
    train_features = [_features(sub, split.x_train) for sub in subs]
    test_features = [_features(sub, split.x_test) for sub in subs]
    head = train_fusion(
        train_features, split.y_train, split.num_classes, settings.fusion_hidden, settings.fusion_epochs,
        settings.shard_dropout, settings.seed,
    )  # fmt: skip
    degraded = {
        f"shard{i}": _fused_accuracy(head, [None if j == i else f for j, f in enumerate(test_features)], split.y_test)
        for i in range(len(subs))
        if len(subs) > 1
    }
    return Fusion(head, _fused_accuracy(head, test_features, split.y_test), degraded)


def shard_budgets(
    shape: VitShape, count: int, devices: Sequence[DeviceSpec], settings: SplitSettings
) -> list[tuple[DeviceSpec, Budget]]:
    """One budget per sub-model, largest memory first: its parameter share, its device's memory and latency.

    Sub-models are paired with devices by size (the largest subset with the most memory), as they are first
    placed; a budget that not even the smallest sub-model meets is refused here, naming the device.
    """
    if settings.keep_ratio is not None and not 0 < settings.keep_ratio <= 1:
        raise UnsupportedOptionError("--keep", settings.keep_ratio, ["a fraction of the parameters in (0, 1]"])
    if settings.latency_ms is not None and not settings.latency_ms > 0:
        raise UnsupportedOptionError("--latency-ms", settings.latency_ms, ["a positive number of milliseconds"])
    fraction = settings.keep_ratio if settings.keep_ratio is not None else 1 / count
    max_parameters = int(fraction * shape.parameters(shape.full()))
    budgets = []
    for device in sorted(devices, key=lambda d: -d.memory_bytes)[:count]:
        flops = None if settings.latency_ms is None else int(settings.latency_ms * 1e-3 * device.gflops * 1e9)
        budget = Budget(max_parameters, device.memory_bytes, flops)
        try:
            budget.check_reachable(shape)
        except ConfigError as exc:
            raise ConfigError(f"device {device.name}: {exc}") from None
        budgets.append((device, budget))
    return budgets


def _by_subset(subsets: Sequence[tuple[int, ...]], budgets: Sequence[tuple[DeviceSpec, Budget]]) -> list[Budget]:
    """The budgets (largest memory first) handed to the subsets largest first, returned in subset order."""
    by_size = sorted(range(len(subsets)), key=lambda i: -len(subsets[i]))
    paired = dict(zip(by_size, (b for _, b in budgets), strict=True))
    return [paired[i] for i in range(len(subsets))]


def _export_shards(
    job: SplitJob,
    subs: SubModels,
    specs: Sequence[ModelSpec],
    costs: Sequence[ShardCost],
    assignment: Assignment,
    host_gflops: float,
) -> tuple[list[ShardPlan], dict[str, float]]:
    """Each shard exported for its device into the staging directory; its plan entry, and each device's busy time."""
    from edgekit.exporters.pipeline import export

    (job.staging / "shards").mkdir(parents=True, exist_ok=True)
    shards = []
    busy = {d.name: 0.0 for d in job.devices}
    full = VitShape.of(job.spec.module)
    for i, (shard_spec, cost, search) in enumerate(zip(specs, costs, subs.searches, strict=True)):
        device = next(d for d in job.devices if d.name == assignment.placement[cost.name])
        job.notify(f"exporting {cost.name} for {device.name} ({device.format})")
        rel = f"shards/{cost.name}-{device.format}"
        result = export(shard_spec, format=device.format, out_dir=job.staging / rel, samples=job.settings.samples)
        size = result.manifest.total_bytes
        # Measured, not assumed: the shard's own runtime on this host, scaled by the two matmul throughputs.
        with runtimes.load(job.staging / rel) as runtime:
            sample = shard_spec.example_inputs[0].numpy()
            local_ms = measure(lambda r=runtime, x=sample: r.run(x), runs=30, warmup=5).median
        estimated = local_ms * host_gflops / device.gflops + transfer_ms(cost, device)
        busy[device.name] += estimated
        shards.append(
            ShardPlan(
                name=cost.name, classes=tuple(subs.subsets[i]), device=device.name, format=device.format, bundle=rel,
                digest=bundle_digest(job.staging / rel),
                keep_ratio=round(full.parameters(search.structure) / full.parameters(full.full()), 6),
                heads=tuple(b.heads for b in search.structure.blocks),
                mlp=tuple(b.mlp for b in search.structure.blocks),
                parameters=shard_spec.parameters, size_bytes=size, flops=cost.flops, memory_bytes=cost.memory_bytes,
                feature_dim=int(subs.models[i].pos_embed.shape[-1]), estimated_ms=round(estimated, 4),
                bound_ms=round(shard_ms(cost, device), 4),
            )
        )  # fmt: skip
    return shards, busy


def _assign(costs: list[ShardCost], devices: Sequence[DeviceSpec]) -> Assignment:
    """Largest-first assignment; when its greedy order strands a shard, the memory pairing that sized the
    shards (largest shard to largest memory) is known to fit, so it is used instead."""
    try:
        return assign(costs, devices)
    except ConfigError:
        by_size = sorted(costs, key=lambda c: -c.memory_bytes)
        by_memory = sorted(devices, key=lambda d: -d.memory_bytes)
        if any(c.memory_bytes > d.memory_bytes for c, d in zip(by_size, by_memory, strict=True)):
            raise
        return assignment_of({c.name: d.name for c, d in zip(by_size, by_memory, strict=True)}, costs, devices)


def _make_submodel(
    full: VisionTransformer, classes: tuple[int, ...], budget: Budget, x: torch.Tensor, y: torch.Tensor
) -> tuple[VisionTransformer, SearchResult]:
    """The sub-model for ``classes``: importance on their images, the structure search, the pruned copy with the
    subset head over the kept channels."""
    mine = torch.isin(y, torch.tensor(classes))
    importance = taylor_importance(full, x[mine], y[mine])
    search = search_structure(VitShape.of(full), importance, budget)
    sub = prune_vit(full, search.keep)
    sub.head = subset_head(sub.head, classes)
    return sub, search


def _features(sub: VisionTransformer, x: np.ndarray, batch: int = 256) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate(
            [sub.features(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
        )


def _fused_accuracy(fusion: FusionHead, features: list[np.ndarray | None], labels: np.ndarray) -> float:
    return float((fusion.logits(features).argmax(-1) == labels).mean())


def _shard_spec(full: ModelSpec, sub: VisionTransformer, index: int) -> ModelSpec:
    extractor = ShardFeatures(copy.deepcopy(sub)).eval()
    extractor.vit.head = nn.Identity()  # not part of what the worker runs
    return ModelSpec(
        name=f"{full.name}-shard{index}",
        family="vit-shard",
        module=extractor,
        example_inputs=full.example_inputs,
        input_names=full.input_names,
        output_names=("features",),
        config={  # enough to build the same module again: VisionTransformer(**config)
            **full.config,
            "dim": int(sub.pos_embed.shape[-1]),
            "depth": len(sub.blocks),
            "block_heads": [b.attn.heads for b in sub.blocks],
            "block_mlp": [b.mlp.fc1.out_features for b in sub.blocks],
            "block_head_dim": [b.attn.head_dim for b in sub.blocks],
            "attention_scale": float(sub.blocks[0].attn.scale),
        },
        task="features",
    )
