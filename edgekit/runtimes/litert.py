"""LiteRT interpreter (``.tflite``): ``ai_edge_litert`` when installed, else the legacy ``tflite_runtime``.

The exporter's signature names inputs ``args_0, args_1 ...`` and outputs ``output_0 ...``; they are
mapped to the manifest's names by position (the number in the name, not dict order).

A static INT8 file has int8 inputs and outputs. Callers still pass and receive float32: inputs are
quantized and outputs dequantized here with each tensor's own scale and zero point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edgekit.errors import BundleError, MissingDependencyError
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


@dataclass(frozen=True)
class Affine:
    """A tensor's quantization: real = scale * (q - zero_point), q an integer of ``dtype``."""

    scale: float
    zero_point: int
    dtype: np.dtype

    @classmethod
    def of(cls, detail: dict) -> Affine | None:
        """The affine map of an integer tensor that the file quantizes per tensor, else None."""
        dtype = np.dtype(detail["dtype"])
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if not np.issubdtype(dtype, np.integer) or not scale:
            return None
        return cls(float(scale), int(zero_point), dtype)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        q = np.round(x.astype(np.float64) / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((q.astype(np.float64) - self.zero_point) * self.scale).astype(np.float32)


def _position(name: str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", name)
    return (int(match.group(1)) if match else 0, name)


class LiteRTRuntime(Runtime):
    name = "LiteRT interpreter"
    no_operator_times = "LiteRT's Python interpreter API has no per-op timing; use its benchmark_model tool"
    native_packages = ("ai_edge_litert|tflite_runtime",)

    @classmethod
    def import_native(cls) -> None:
        _interpreter_class()

    def _open(self, graph: GraphSpec | None) -> None:
        interpreter_cls, self.backend = _interpreter_class()
        try:
            self._interpreter = interpreter_cls(model_path=str(self.model_file), num_threads=self.threads or 2)
            self._interpreter.allocate_tensors()  # applies the XNNPACK delegate now, while its banner is captured
        except ValueError as exc:
            if "Didn't find op for builtin opcode" not in str(exc):
                raise
            # e.g. tflite-runtime 2.14 lacks FULLY_CONNECTED v12, which dynamic-INT8 files from litert-torch use
            op = str(exc).split("opcode", 1)[1].split("?")[0].split(".")[0].strip()
            raise BundleError(
                f"{self.backend} is too old for {self.model_file.name} (op {op}): "
                "install ai-edge-litert (pip install 'edgekit-sdk[tflite]') or export without --int8 dynamic"
            ) from exc
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
        in_details = self._runner.get_input_details()
        out_details = self._runner.get_output_details()
        # float at the interface, integers in the file: convert at the boundary (None: pass through)
        ins, outs = self._paired(self._inputs, graph, True), self._paired(self._outputs, graph, False)
        self._in_affine = [self._boundary(in_details[n], spec) for n, spec in ins]
        self._out_affine = [self._boundary(out_details[n], spec) for n, spec in outs]

    @staticmethod
    def _paired(names: list[str], graph: GraphSpec | None, inputs: bool) -> list[tuple[str, TensorSpec | None]]:
        specs = (graph.inputs if inputs else graph.outputs) if graph is not None else [None] * len(names)
        return list(zip(names, specs, strict=True))

    @staticmethod
    def _boundary(detail: dict, spec: TensorSpec | None) -> Affine | None:
        affine = Affine.of(detail)
        if affine is None or (spec is not None and spec.numpy_dtype == affine.dtype):
            return None  # a genuinely integer tensor (token ids ...), not a quantized float
        return affine

    def _introspect(self) -> GraphSpec:
        in_details = self._runner.get_input_details()
        out_details = self._runner.get_output_details()

        def spec(name: str, detail: dict, affine: Affine | None) -> TensorSpec:
            dtype = "float32" if affine else np.dtype(detail["dtype"]).name
            return TensorSpec(name, tuple(int(d) for d in detail["shape"]), dtype)

        return GraphSpec(
            name=self._entry,
            file=self.model_file.name,
            entry=self._entry,
            inputs=tuple(spec(n, in_details[n], a) for n, a in zip(self._inputs, self._in_affine, strict=True)),
            outputs=tuple(spec(n, out_details[n], a) for n, a in zip(self._outputs, self._out_affine, strict=True)),
        )

    def _run_native(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feeds = {
            name: affine.quantize(array) if affine else array
            for name, array, affine in zip(self._inputs, arrays, self._in_affine, strict=True)
        }
        result = self._runner(**feeds)
        # The runner returns views into interpreter memory that the next call overwrites: copy (or dequantize).
        return [
            affine.dequantize(result[name]) if affine else np.array(result[name], copy=True)
            for name, affine in zip(self._outputs, self._out_affine, strict=True)
        ]

    def close(self) -> None:
        self._runner = None
        self._interpreter = None
