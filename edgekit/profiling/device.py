"""``edgekit profile-device``: what the splitter needs to know about this device, measured.

Per-block latency of a model in PyTorch eager (one entry per top-level stage: for a ViT the patch
embedding, each transformer block and the head), the memory available, this CPU's fp32 matmul
throughput, and the idle power where a meter exists. Written as JSON that ``edgekit split`` reads.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgekit.profiling.energy import select_meter
from edgekit.profiling.energy.base import measure_idle
from edgekit.profiling.profiler import host_info


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    host: dict[str, Any]
    memory_total_bytes: int | None
    memory_available_bytes: int | None
    matmul_gflops: float
    model: str
    model_config: dict[str, Any]
    blocks: list[dict[str, Any]]  # [{"name", "ms"}] in execution order
    total_ms: float
    idle_watts: float | None
    power_source: str | None
    blocks_timed_by: str = "PyTorch eager"  # or why the blocks were not timed (no torch on the device)
    measured_by: dict[str, Any] | None = None  # {"worker", "pid"} when a worker measured its own device

    def to_json(self) -> dict[str, Any]:
        return {"schema": "edgekit.device/1", **asdict(self)}


def memory_info() -> tuple[int | None, int | None]:
    try:
        fields = dict(line.split(":", 1) for line in open("/proc/meminfo").read().splitlines())
        kb = lambda key: int(fields[key].strip().split()[0]) * 1024  # noqa: E731
        return kb("MemTotal"), kb("MemAvailable")
    except (OSError, KeyError, ValueError):
        return None, None


def matmul_gflops(size: int = 512, repeats: int = 10) -> float:
    """Median fp32 GFLOP/s of a square numpy matmul (BLAS, all threads): a yardstick for the CPU."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times) / 1e9


def block_latencies(model: str, config: dict[str, Any] | None = None, runs: int = 20) -> tuple[list[dict], Any]:
    """Median ms of each top-level stage of ``model`` on its example input (PyTorch eager)."""
    import torch

    from edgekit.models import create_model

    spec = create_model(model, **(config or {}))
    module = spec.module
    stages = _stages(module)
    marks: dict[str, list[float]] = {name: [] for name, _ in stages}
    starts: dict[str, float] = {}
    handles = []
    for name, sub in stages:
        handles.append(
            sub.register_forward_pre_hook(lambda _m, _i, name=name: starts.__setitem__(name, time.perf_counter()))
        )
        handles.append(sub.register_forward_hook(
            lambda _m, _i, _o, name=name: marks[name].append((time.perf_counter() - starts[name]) * 1e3)
        ))  # fmt: skip
    with torch.no_grad():
        for _ in range(3):
            module(*spec.example_inputs)
        for values in marks.values():
            values.clear()
        for _ in range(runs):
            module(*spec.example_inputs)
    for h in handles:
        h.remove()
    return [{"name": name, "ms": statistics.median(marks[name])} for name, _ in stages], spec


def _stages(module) -> list[tuple[str, Any]]:
    """Top-level children, with sequential containers (ViT blocks, TinyViT stages) opened one level."""
    import torch

    out = []
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Sequential | torch.nn.ModuleList) and len(child) > 1:
            out += [(f"{name}.{i}", c) for i, c in enumerate(child)]
        elif any(p.numel() for p in child.parameters()) or list(child.children()):
            out.append((name, child))
    return out


def profile_device(
    model: str = "vit_tiny",
    config: dict[str, Any] | None = None,
    name: str | None = None,
    energy: str = "auto",
    blocks_optional: bool = False,
) -> DeviceProfile:
    """``blocks="optional"`` (a worker measuring its own device): without torch there, the blocks are left out
    and the profile says so; memory, matmul throughput and idle power need numpy only."""
    # The meter first: one asked for by name that cannot read here fails before minutes of timing.
    meter, _ = select_meter(energy) if energy not in ("none", "estimate") else (None, [])
    timed_by = "PyTorch eager"
    try:
        blocks, spec = block_latencies(model, config)
        model, config = spec.name, spec.config
    except ImportError as exc:
        if not (blocks_optional and exc.name == "torch"):
            raise
        blocks, config = [], dict(config or {})
        timed_by = "not timed: this device has no torch (memory, matmul and idle power only)"
    total, available = memory_info()
    idle = measure_idle(meter, 1.0) if meter else None
    return DeviceProfile(
        name=name or os.uname().nodename, host=host_info(), memory_total_bytes=total, memory_available_bytes=available,
        matmul_gflops=matmul_gflops(), model=model, model_config=config, blocks=blocks,
        total_ms=sum(b["ms"] for b in blocks), idle_watts=idle, power_source=meter.name if meter else None,
        blocks_timed_by=timed_by,
    )  # fmt: skip
