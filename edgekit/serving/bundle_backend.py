"""One bundle served in this process: its manifest is the metadata, its runtime answers."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgekit.bundle import MANIFEST_NAME, read_bundle, sha256_file
from edgekit.serving.backend import BackendAnswer, ModelMetadata


class BundleBackend:
    def __init__(self, path: str | Path, name: str | None = None, graph: str | None = None,
                 threads: int | None = None):  # fmt: skip
        from edgekit.runtimes import load

        bundle = read_bundle(path)
        spec = bundle.graph(graph)
        self.runtime = load(bundle, spec.name, threads=threads)
        self.metadata = ModelMetadata(
            name=name or bundle.model, version=sha256_file(bundle.path / MANIFEST_NAME)[:12],
            platform=f"edgekit_{bundle.format}", inputs=spec.inputs, outputs=spec.outputs,
        )  # fmt: skip
        # Not every runtime may be entered from two threads at once (a LiteRT interpreter may not).
        self._lock = threading.Lock()

    def ready(self) -> bool:
        return True  # loaded and verified in __init__

    def infer(self, inputs: Mapping[str, np.ndarray]) -> BackendAnswer:
        with self._lock:
            outputs = self.runtime.run(dict(inputs))
        return BackendAnswer({s.name: np.asarray(outputs[s.name], dtype=s.numpy_dtype) for s in self.metadata.outputs})

    def close(self) -> None:
        self.runtime.close()
