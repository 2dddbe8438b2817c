"""Choosing one graph of a token-merging bundle against a latency budget, on the device itself.

Every rate's graph is timed at load in interleaved rounds (a short warm-up, then one run of each graph per
round, so a burst of load on a shared device hits every graph alike), and the measurement is cached per
device: a small JSON under ``~/.cache/edgekit/latency`` (``EDGEKIT_CACHE_DIR`` moves it) keyed by the bundle's
digest, the CPU model and the thread count. The choice is the most accurate graph whose p90 fits the budget
(without recorded accuracies: the lowest rate that fits, the closest to the unmerged model); when none fits,
the fastest graph, marked as not fitting. Numpy and the runtime only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle import Bundle
from edgekit.errors import InputError, UnsupportedOptionError
from edgekit.inputs import make_inputs
from edgekit.jsonio import write_json
from edgekit.layouts import TokenMergeLayout

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass(frozen=True)
class LatencyProbe:
    """How graphs are timed at load: ``warmup`` untimed runs each, then ``runs`` interleaved rounds.

    ``clock`` (seconds) and ``run_once`` are the seams a test uses to stand in for a slower device.
    """

    warmup: int = 3
    runs: int = 20
    clock: Callable[[], float] = time.perf_counter

    def run_once(self, runtime: Any, feed: dict[str, np.ndarray]) -> None:
        runtime.run(feed)

    def measure(self, runtimes: dict[str, Any]) -> dict[str, list[float]]:
        """Milliseconds of every timed run, per graph."""
        feeds = {name: make_inputs(rt.input_specs, 1, seed=0)[0] for name, rt in runtimes.items()}
        for name, rt in runtimes.items():
            for _ in range(self.warmup):
                self.run_once(rt, feeds[name])
        samples: dict[str, list[float]] = {name: [] for name in runtimes}
        for _ in range(self.runs):
            for name, rt in runtimes.items():
                start = self.clock()
                self.run_once(rt, feeds[name])
                samples[name].append((self.clock() - start) * 1e3)
        return samples


@dataclass(frozen=True)
class GraphTiming:
    graph: str
    r: int
    p50_ms: float
    p90_ms: float
    runs: int
    accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"graph": self.graph, "r": self.r, "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "runs": self.runs,
                "accuracy": self.accuracy}  # fmt: skip


@dataclass(frozen=True)
class BudgetChoice:
    """Which graph runs, why, and every graph's measurement on this device."""

    graph: str
    budget_ms: float
    fits: bool  # False: no graph's p90 fits; the fastest was chosen
    timings: tuple[GraphTiming, ...]
    cached: bool  # the timings came from this device's cache
    cache_file: str | None = None
    device: dict[str, Any] = field(default_factory=dict)

    @property
    def chosen(self) -> GraphTiming:
        return next(t for t in self.timings if t.graph == self.graph)

    def to_json(self) -> dict[str, Any]:
        return {"graph": self.graph, "budget_ms": self.budget_ms, "fits": self.fits, "cached": self.cached,
                "cache_file": self.cache_file, "device": self.device,
                "timings": [t.to_json() for t in self.timings]}  # fmt: skip


def merge_layout(bundle: Bundle) -> TokenMergeLayout:
    layout = bundle.manifest.extras.token_merge
    if layout is None:
        raise InputError(
            f"{bundle.path}: a latency budget picks one of several token-merge rates, and this bundle has none; "
            "export with --token-merge 0,4,8 (for example)"
        )
    return layout


def choose_graph(bundle: Bundle, budget_ms: float, open_graph: Callable[[str], Any], threads: int | None = None,
                 probe: LatencyProbe | None = None, cache_dir: str | Path | None = None) -> BudgetChoice:  # fmt: skip
    """Time every rate's graph on this device (or read this device's cached timing) and choose one.
    ``open_graph(name)`` opens a runtime for one graph (``threads`` only keys the cache)."""
    if not budget_ms > 0:
        raise UnsupportedOptionError("--budget-ms", budget_ms, ["a positive number of milliseconds"])
    layout = merge_layout(bundle)
    device = device_key(threads)
    path = _cache_path(bundle, device, cache_dir)
    samples = _read_cache(path)
    cached = samples is not None and set(samples) == {r.graph for r in layout.rates}
    if not cached:
        samples = _measure(layout, open_graph, probe or LatencyProbe())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {"version": CACHE_VERSION, "device": device, "samples_ms": samples})
        except OSError as exc:  # a read-only home still runs; it measures again next time
            log.warning("could not cache the latency measurement at %s: %s", path, exc)
    timings = tuple(
        GraphTiming(r.graph, r.r, float(np.percentile(samples[r.graph], 50)),
                    float(np.percentile(samples[r.graph], 90)), len(samples[r.graph]), r.accuracy)
        for r in layout.rates
    )  # fmt: skip
    graph, fits = pick(timings, budget_ms)
    choice = BudgetChoice(graph, budget_ms, fits, timings, cached, str(path), device)
    log.info("budget %.1f ms: %s (p90 %.2f ms%s)", budget_ms, graph, choice.chosen.p90_ms,
             "" if fits else ", the fastest; none fits")  # fmt: skip
    return choice


def pick(timings: tuple[GraphTiming, ...], budget_ms: float) -> tuple[str, bool]:
    """The most accurate graph whose p90 fits (ties and unknown accuracy: the lowest rate), else the fastest."""
    fitting = [t for t in timings if t.p90_ms <= budget_ms]
    if not fitting:
        return min(timings, key=lambda t: t.p90_ms).graph, False
    known = [t for t in fitting if t.accuracy is not None]
    if known:
        return max(known, key=lambda t: (t.accuracy, -t.r)).graph, True
    return min(fitting, key=lambda t: t.r).graph, True


def _measure(layout: TokenMergeLayout, open_graph: Callable[[str], Any], probe: LatencyProbe) -> dict:
    opened = {r.graph: open_graph(r.graph) for r in layout.rates}
    try:
        return probe.measure(opened)
    finally:
        for runtime in opened.values():
            runtime.close()


def device_key(threads: int | None) -> dict[str, Any]:
    return {"cpu": cpu_model(), "machine": platform.machine(), "threads": threads}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def bundle_digest(bundle: Bundle) -> str:
    """One sha256 over the bundle's file hashes (already checked against the files when it was read)."""
    listing = sorted((name, entry.sha256) for name, entry in bundle.manifest.files.items())
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("EDGEKIT_CACHE_DIR") or Path.home() / ".cache" / "edgekit")


def _cache_path(bundle: Bundle, device: dict[str, Any], cache_dir: str | Path | None) -> Path:
    key = hashlib.sha256(json.dumps([bundle_digest(bundle), device], sort_keys=True).encode()).hexdigest()[:32]
    return cache_root(cache_dir) / "latency" / f"{key}.json"


def _read_cache(path: Path) -> dict[str, list[float]] | None:
    """The cached samples, or None when absent or unreadable (then the graphs are measured again)."""
    try:
        data = json.loads(path.read_text())
        if data.get("version") != CACHE_VERSION:
            return None
        return {str(k): [float(v) for v in vs] for k, vs in data["samples_ms"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
