"""Load a bundle (or a bare model file) with the runtime of its format.

Importing this package imports numpy only; each runtime imports its native library on first use.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.bundle import MANIFEST_NAME, Bundle, read_bundle
from edgekit.errors import BundleError
from edgekit.formats import FORMATS, format_for_suffix, get_format
from edgekit.runtimes.base import Runtime, check_inputs

__all__ = ["Runtime", "check_inputs", "load", "load_bundle_graphs"]


def load(path: str | Path | Bundle, graph: str | None = None, threads: int | None = None) -> Runtime:
    """A runtime for one graph of a bundle directory, or for a bare ``.pte`` / ``.tflite`` / ``.onnx`` file.

    A bundle's manifest and file hashes are checked before any native code reads the model.
    """
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
