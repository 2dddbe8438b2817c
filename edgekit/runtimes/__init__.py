"""Load a bundle (or a bare model file) with the runtime of its format.

Importing this package imports numpy only; each runtime imports its native library on first use.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.bundle import MANIFEST_NAME, Bundle, read_bundle
from edgekit.errors import BundleError, InputError
from edgekit.formats import FORMATS, format_for_suffix, get_format
from edgekit.runtimes.base import Runtime, check_inputs
from edgekit.runtimes.budget import LatencyProbe, choose_graph

__all__ = ["Runtime", "check_inputs", "load", "load_bundle_graphs"]


def load(
    path: str | Path | Bundle,
    graph: str | None = None,
    threads: int | None = None,
    budget_ms: float | None = None,
    probe: LatencyProbe | None = None,
    cache_dir: str | Path | None = None,
) -> Runtime:
    """A runtime for one graph of a bundle directory, or for a bare ``.pte`` / ``.tflite`` / ``.onnx`` file.

    A bundle's manifest and file hashes are checked before any native code reads the model. ``budget_ms``
    (a token-merging bundle): time every rate's graph on this device, or read this device's cached timing,
    and open the most accurate one whose p90 fits (:mod:`edgekit.runtimes.budget`); the runtime's ``budget``
    says which and why. ``probe`` and ``cache_dir`` change how and where that timing is done and kept.
    """
    if budget_ms is not None:
        if graph is not None:
            raise InputError("give a graph or a latency budget, not both: the budget chooses the graph")
        bundle = path if isinstance(path, Bundle) else read_bundle(path)
        choice = choose_graph(bundle, budget_ms, lambda name: load(bundle, name, threads), threads, probe, cache_dir)
        runtime = load(bundle, choice.graph, threads)
        runtime.budget = choice
        return runtime
    if isinstance(path, Bundle):
        bundle = path
    else:
        p = Path(path)
        if p.is_file() and p.name != MANIFEST_NAME:
            fmt = format_for_suffix(p.name)
            if fmt is None:
                suffixes = ", ".join(f.suffix for _, f in FORMATS.items())
                raise BundleError(f"{p} is neither a bundle directory nor a model file ({suffixes})")
            return fmt.runtime_class()(p, None, threads=threads)
        bundle = read_bundle(p.parent if p.name == MANIFEST_NAME else p)
    spec = bundle.graph(graph)
    runtime_cls = get_format(bundle.format).runtime_class()
    return runtime_cls(bundle.file(spec.file), spec, threads=threads)


def load_bundle_graphs(path: str | Path, threads: int | None = None) -> dict[str, Runtime]:
    """Every graph of a multi-graph bundle (encoder, decoder step, ...) by name."""
    bundle = read_bundle(path)
    return {g.name: load(bundle, g.name, threads=threads) for g in bundle.graphs}
