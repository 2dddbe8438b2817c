"""``edgekit.profile()``: how a bundle behaves on this device, with every sample kept.

Per graph: verification, runtime import (once per process) and cold load time, first inference,
steady-state latency over ``runs`` (or at
least ``duration`` seconds) after ``warmup``, peak resident memory over the window and the memory the
model added, and energy per inference from a meter (idle baseline subtracted) or an estimate from the
model's FLOPs — always labelled with its source. Needs numpy and the bundle's runtime only.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bundle import read_bundle
from edgekit.errors import EdgekitError, UnsupportedOptionError
from edgekit.formats import get_format
from edgekit.inputs import make_inputs
from edgekit.profiling.energy import METERS, measure_window, select_meter
from edgekit.profiling.energy.base import BelowNoiseFloor, EnergyMeasurement
from edgekit.profiling.energy.estimate import DEVICES, detect_device, estimate_joules
from edgekit.profiling.latency import LatencyStats, ToolSummary, measure
from edgekit.profiling.memory import PeakSampler, rss_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnergyResult:
    source: str  # meter name, or "estimate"
    joules_per_inference: float | None  # None exactly when the window was below the meter's noise floor
    average_watts: float | None
    idle_watts: float | None = None
    window_seconds: float | None = None
    detail: str = ""
    trace: tuple[tuple[float, float], ...] = ()
    below_noise_floor: BelowNoiseFloor | None = None  # the raw numbers of a window the meter cannot resolve

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["trace"] = [list(p) for p in self.trace]
        return data


@dataclass(frozen=True)
class GraphProfile:
    graph: str
    load_ms: float
    first_inference_ms: float
    latency: LatencyStats
    peak_rss_bytes: int | None  # None: the device's tool does not report it
    model_memory_bytes: int | None
    energy: EnergyResult | None

    def summary(self) -> dict[str, Any]:
        lat = self.latency
        summary = {
            "graph": self.graph, "load_ms": self.load_ms, "first_inference_ms": self.first_inference_ms,
            "runs": lat.runs, "mean_ms": lat.mean, "stdev_ms": lat.stdev, "min_ms": lat.min,
            "p50_ms": lat.median, "p90_ms": lat.percentile(90), "p99_ms": lat.percentile(99),
            "max_ms": lat.max, "throughput_per_s": 1e3 / lat.mean if lat.mean else None,
            "peak_rss_bytes": self.peak_rss_bytes, "model_memory_bytes": self.model_memory_bytes,
        }  # fmt: skip
        # a statistic the device's tool did not print is unknown: null in JSON (NaN is not JSON)
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in summary.items()}


@dataclass(frozen=True)
class ProfileReport:
    bundle: str
    model: str
    format: str
    runtime: str
    file_bytes: int
    verify_ms: float
    import_ms: float  # importing the runtime's native library in this process (paid once per process)
    threads: int | None
    host: dict[str, Any]
    graphs: tuple[GraphProfile, ...]
    energy_notes: tuple[str, ...] = field(default_factory=tuple)
    device: str | None = None  # the worker it ran on (`profile --on`), None for this machine
    pid: int | None = None  # the process that ran it
    timed_by: str | None = None  # a device's own benchmark tool, when it did the timing (`profile --on adb`)

    def to_json(self) -> dict[str, Any]:
        graphs = []
        for g in self.graphs:
            reported = g.latency.reported.to_json() if g.latency.reported else None
            graphs.append({**g.summary(), "samples_ms": list(g.latency.samples_ms), "reported": reported,
                           "energy": g.energy.to_json() if g.energy else None})  # fmt: skip
        first = graphs[0]
        return {
            "bundle": self.bundle, "model": self.model, "format": self.format, "runtime": self.runtime,
            "file_bytes": self.file_bytes, "verify_ms": self.verify_ms, "import_ms": self.import_ms,
            "threads": self.threads, "host": self.host,
            **{k: v for k, v in first.items() if k not in ("graph",)},
            "graphs": graphs, "energy_notes": list(self.energy_notes), "device": self.device, "pid": self.pid,
            "timed_by": self.timed_by,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProfileReport:
        """The report back from ``to_json`` (how a worker's report crosses the wire: JSON, never a pickle)."""
        try:
            graphs = tuple(
                GraphProfile(
                    g["graph"],
                    float(g["load_ms"]),
                    float(g["first_inference_ms"]),
                    LatencyStats(
                        tuple(float(x) for x in g["samples_ms"]),
                        ToolSummary.from_json(g["reported"]) if g.get("reported") else None,
                    ),
                    None if g["peak_rss_bytes"] is None else int(g["peak_rss_bytes"]),
                    None if g["model_memory_bytes"] is None else int(g["model_memory_bytes"]),
                    _energy_from_json(g.get("energy")),
                )  # fmt: skip
                for g in data["graphs"]
            )
            return cls(
                bundle=str(data["bundle"]), model=str(data["model"]), format=str(data["format"]),
                runtime=str(data["runtime"]), file_bytes=int(data["file_bytes"]), verify_ms=float(data["verify_ms"]),
                import_ms=float(data["import_ms"]), threads=data.get("threads"), host=dict(data.get("host") or {}),
                graphs=graphs, energy_notes=tuple(data.get("energy_notes") or ()), device=data.get("device"),
                pid=data.get("pid"), timed_by=data.get("timed_by"),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgekitError(f"not a profile report: {type(exc).__name__}: {exc}") from None

    def csv_rows(self) -> list[dict[str, Any]]:
        """One row per timed run: graph, run index, latency; a device tool's summary as one row per statistic."""
        rows: list[dict[str, Any]] = []
        for g in self.graphs:
            rows += [{"graph": g.graph, "run": i, "latency_ms": ms} for i, ms in enumerate(g.latency.samples_ms)]
            if not g.latency.samples_ms and g.latency.reported:
                summary = g.summary()
                rows += [{"graph": g.graph, "run": key.removesuffix("_ms"), "latency_ms": summary[key]}
                         for key in ("mean_ms", "stdev_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")
                         if summary[key] is not None]  # fmt: skip
        return rows


def profile(
    bundle_path: str | Path,
    runs: int = 50,
    warmup: int = 5,
    duration: float | None = None,
    threads: int | None = None,
    energy: str = "auto",
    idle_seconds: float = 1.0,
    device: str | None = None,
) -> ProfileReport:
    """Profile every graph of a bundle. ``energy``: 'auto', a meter name, 'estimate' or 'none'."""
    from edgekit import runtimes

    if runs < 1 or warmup < 0:
        raise UnsupportedOptionError("--runs/--warmup", (runs, warmup), ["runs >= 1 and warmup >= 0"])
    start = time.perf_counter()
    bundle = read_bundle(bundle_path)  # hashes checked here: reported as verify time
    verify_ms = (time.perf_counter() - start) * 1e3
    t0 = time.perf_counter()
    get_format(bundle.format).runtime_class().import_native()
    import_ms = (time.perf_counter() - t0) * 1e3
    meter, notes = _meter(energy)
    model_flops = bundle.manifest.model.flops
    profiles = []
    runtime_name = ""
    for graph in bundle.graphs:
        before = rss_bytes()
        with PeakSampler() as peak:
            t0 = time.perf_counter()
            runtime = runtimes.load(bundle, graph=graph.name, threads=threads)
            load_ms = (time.perf_counter() - t0) * 1e3
            runtime_name = runtime.name
            feed = make_inputs(runtime.input_specs, 1, seed=0)[0]
            t0 = time.perf_counter()
            runtime.run(feed)
            first_ms = (time.perf_counter() - t0) * 1e3
            model_memory = rss_bytes() - before

            for _ in range(warmup):  # outside the energy window, which must hold the timed runs only
                runtime.run(feed)

            def timed(runtime=runtime, feed=feed) -> LatencyStats:
                return measure(lambda: runtime.run(feed), runs=runs, warmup=0, min_seconds=duration or 0.0)

            if meter is not None:
                measured, latency = measure_window(meter, timed, idle_seconds=idle_seconds)
                result = measured_energy(meter.name, measured, len(latency.samples_ms))
            else:
                latency = timed()
                # each graph's own count (a decoder step costs a step); bundles from before graphs had one: the model's
                flops = graph.flops if graph.flops is not None else (model_flops if len(bundle.graphs) == 1 else None)
                result = _estimate(energy, flops, latency, device)
            runtime.close()
        profiles.append(GraphProfile(graph.name, load_ms, first_ms, latency, peak.peak, model_memory, result))
    return ProfileReport(
        bundle=str(bundle_path), model=bundle.model, format=bundle.format, runtime=runtime_name,
        file_bytes=bundle.manifest.total_bytes, verify_ms=verify_ms, import_ms=import_ms,
        threads=threads, host=host_info(), graphs=tuple(profiles), energy_notes=tuple(notes),
    )  # fmt: skip


def _meter(choice: str):
    allowed = ["auto", "none", "estimate", *METERS.names()]
    if choice not in allowed:
        raise UnsupportedOptionError("--energy", choice, allowed)
    return select_meter(choice)  # a named meter that cannot read here is a MeterUnavailable (an EdgekitError)


def measured_energy(source: str, measured: EnergyMeasurement, inferences: int) -> EnergyResult:
    counts = f"{measured.samples} samples over {measured.seconds:.2f} s, {measured.wraps} counter wrap(s)"
    noise = measured.below_noise_floor
    per_inference = None if measured.joules is None else measured.joules / inferences
    detail = f"{noise.describe()} ({inferences} inferences); {counts}" if noise else counts
    return EnergyResult(
        source, per_inference, measured.average_watts, measured.idle_watts, measured.seconds, detail,
        measured.trace, noise,
    )  # fmt: skip


def _estimate(choice: str, flops: float | None, latency: LatencyStats, device: str | None) -> EnergyResult | None:
    if choice == "none":
        return None
    if not flops:
        log.warning("no energy meter and the manifest has no FLOP count: energy not reported")
        return None
    device = device or detect_device()
    joules = estimate_joules(flops, device)
    row = DEVICES.get(device)
    return EnergyResult(
        "estimate", joules, joules / (latency.median / 1e3), None, None,
        f"{flops / 1e6:,.1f} MFLOP x {row.joules_per_flop * 1e12:.0f} pJ/FLOP ({device}: {row.basis})",
    )  # fmt: skip


def _energy_from_json(data: dict[str, Any] | None) -> EnergyResult | None:
    if not data:
        return None
    trace = tuple((float(t), float(w)) for t, w in data.get("trace") or ())
    return EnergyResult(**{**{k: data[k] for k in EnergyResult.__dataclass_fields__ if k in data}, "trace": trace})


def host_info() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count(),
                            "python": platform.python_version()}  # fmt: skip
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info
