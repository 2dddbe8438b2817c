"""The report a class-wise split plan carries: the full model against the fused split, per shard and per device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgekit.splitter.assign import Assignment
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.plan import ShardPlan
from edgekit.splitter.prune import VitStructure
from edgekit.splitter.strategy import SplitJob
from edgekit.splitter.structure_search import SearchResult
from edgekit.types import jsonable


def classwise_report(
    job: SplitJob,
    *,
    full_features: int,
    full_flops: int,
    fused_accuracy: float,
    degraded: dict[str, float],
    sub_accuracy: Sequence[float],
    shards: Sequence[ShardPlan],
    busy: dict[str, float],
    host_gflops: float,
    assignment: Assignment,
    timings: dict[str, float],
    searches: Sequence[SearchResult],
    full_structure: VitStructure,
) -> dict[str, Any]:
    """``plan.json``'s ``report``: sizes, accuracies (fused, degraded, per subset), the critical path, and what
    each shard kept of the full model (width, depth and which blocks, heads / head dim / MLP per kept block, the
    limits the structure search shrank it for)."""
    full_size = 4 * full_features
    fastest: DeviceSpec = max(job.devices, key=lambda d: d.gflops)
    return {
        "dataset": job.data,
        "test_samples": len(job.split.y_test),
        "full": {
            "parameters": job.spec.parameters,
            "feature_parameters": full_features,
            "size_bytes": full_size,
            "flops": full_flops,
            "structure": full_structure.to_json(),
            "accuracy": job.full_accuracy,
            "bound_ms_on_fastest": round(full_flops / (fastest.gflops * 1e9) * 1e3, 4),
        },
        "split": {
            "accuracy": fused_accuracy,
            "accuracy_drop_points": round(100 * (job.full_accuracy - fused_accuracy), 3),
            "degraded_accuracy": degraded,
            "total_parameters": sum(s.parameters for s in shards),
            "largest_shard_fraction": max(s.parameters for s in shards) / full_features,
            "size_reduction_per_shard": {s.name: round(full_size / (4 * s.parameters), 3) for s in shards},
            "subset_accuracy": {f"shard{i}": a for i, a in enumerate(sub_accuracy)},
            "structure": {
                s.name: {
                    **search.structure.to_json(),
                    "blocks_kept": list(search.keep.block_indices),
                    "bound_by": list(search.binding),
                }
                for s, search in zip(shards, searches, strict=True)
            },  # fmt: skip
            "critical_path_ms": round(max(busy.values()), 4),
            "critical_path_basis": (
                f"each shard timed with its runtime on the planning host (median of 30, host matmul "
                f"{host_gflops:.1f} GFLOP/s), scaled by host / device GFLOP/s, plus link time"
            ),
            "device_busy_ms": {k: round(v, 4) for k, v in busy.items()},
            # FLOPs at fp32 matmul peak: what the assignment balances; small models run far below it
            "critical_path_bound_ms": round(assignment.critical_ms, 4),
        },
        "settings": jsonable(job.settings.__dict__),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
