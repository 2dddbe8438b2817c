"""LiteRT interpreter (``.tflite``): ``ai_edge_litert`` when installed, else the legacy ``tflite_runtime``.

The exporter's signature names inputs ``args_0, args_1 ...`` and outputs ``output_0 ...``; they are
mapped to the manifest's names by position (the number in the name, not dict order).
"""

from __future__ import annotations

import re

import numpy as np

from edgekit.errors import MissingDependencyError
from edgekit.runtimes.base import Runtime
from edgekit.types import GraphSpec, TensorSpec


def _interpreter_class() -> tuple[type, str]:
    """The interpreter class and the package it came from."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except ImportError:
        raise MissingDependencyError("ai-edge-litert", "tflite", "running .tflite bundles") from None


def _position(name: str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", name)
    return (int(match.group(1)) if match else 0, name)


class LiteRTRuntime(Runtime):
    name = "LiteRT interpreter"
    native_packages = ("ai_edge_litert|tflite_runtime",)

    @classmethod
    def import_native(cls) -> None:
        _interpreter_class()

    def _open(self, graph: GraphSpec | None) -> None:
        interpreter_cls, self.backend = _interpreter_class()
        self._interpreter = interpreter_cls(model_path=str(self.model_file), num_threads=self.threads or 2)
        self._interpreter.allocate_tensors()  # applies the XNNPACK delegate now, while its banner is captured
        signatures = self._interpreter.get_signature_list()
        self._entry = (graph.entry if graph else None) or (next(iter(signatures)) if signatures else None)
        if self._entry is None:
            raise ValueError("the model has no signature")
        if self._entry not in signatures:
            raise ValueError(f"no signature {self._entry!r}; the file has {sorted(signatures)}")
        self._runner = self._interpreter.get_signature_runner(self._entry)
        self._inputs = sorted(signatures[self._entry]["inputs"], key=_position)
        self._outputs = sorted(signatures[self._entry]["outputs"], key=_position)
        if graph is not None and (len(graph.inputs), len(graph.outputs)) != (len(self._inputs), len(self._outputs)):
            raise ValueError(
                f"signature {self._entry!r} has {len(self._inputs)} inputs / {len(self._outputs)} outputs, "
                f"the manifest declares {len(graph.inputs)} / {len(graph.outputs)}"
            )

    def _introspect(self) -> GraphSpec:
        in_details = self._runner.get_input_details()
        out_details = self._runner.get_output_details()

        def spec(name: str, detail: dict) -> TensorSpec:
            return TensorSpec(name, tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]).name)

        return GraphSpec(
            name=self._entry,
            file=self.model_file.name,
            entry=self._entry,
            inputs=tuple(spec(n, in_details[n]) for n in self._inputs),
            outputs=tuple(spec(n, out_details[n]) for n in self._outputs),
        )

    def _run_native(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        result = self._runner(**dict(zip(self._inputs, arrays, strict=False)))
        # The runner returns views into interpreter memory that the next call overwrites.
        return [np.array(result[name], copy=True) for name in self._outputs]

    def close(self) -> None:
        self._runner = None
        self._interpreter = None
