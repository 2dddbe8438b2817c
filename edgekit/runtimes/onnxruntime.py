"""ONNX Runtime (``.onnx``, with its ``.onnx.data`` side file when the exporter wrote one)."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgekit.errors import MissingDependencyError
from edgekit.runtimes.base import Runtime
from edgekit.types import GraphSpec, TensorSpec

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


class OnnxRuntime(Runtime):
    name = "ONNX Runtime"
    native_packages = ("onnxruntime",)

    @classmethod
    def import_native(cls) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise MissingDependencyError("onnxruntime", "onnx", "running .onnx bundles") from None

    def _open(self, graph: GraphSpec | None) -> None:
        self.import_native()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only; the library logs through edgekit, not stderr
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        self._session = ort.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])
        self._input_names = [i.name for i in self._session.get_inputs()]
        if graph is not None and [s.name for s in graph.inputs] != self._input_names:
            # The manifest and the file disagree about the graph's interface: do not guess a mapping.
            raise ValueError(f"inputs {self._input_names} differ from the manifest's {[s.name for s in graph.inputs]}")

    def _introspect(self) -> GraphSpec:
        def spec(arg) -> TensorSpec:
            shape = tuple(d if isinstance(d, int) else 1 for d in arg.shape)
            return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, "float32"))

        return GraphSpec(
            name="forward",
            file=self.model_file.name,
            inputs=tuple(spec(a) for a in self._session.get_inputs()),
            outputs=tuple(spec(a) for a in self._session.get_outputs()),
        )

    def _run_native(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return list(self._session.run(None, dict(zip(self._input_names, arrays, strict=False))))

    def close(self) -> None:
        self._session = None

    @classmethod
    def operator_times(
        cls, model_file: Path, graph: GraphSpec, inputs: dict[str, np.ndarray], runs: int, threads: int | None
    ) -> dict[tuple[str, str], list[float]]:
        """ONNX Runtime's own profiler: a Chrome-trace JSON of every node run, with its execution provider."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("onnxruntime", "onnx", "profiling .onnx bundles") from None
        with tempfile.TemporaryDirectory() as tmp:
            options = ort.SessionOptions()
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / "ort")
            options.log_severity_level = 3
            if threads:
                options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
            for _ in range(runs):
                session.run(None, inputs)
            trace = json.loads(Path(session.end_profiling()).read_text())
        rows: dict[tuple[str, str], list[float]] = defaultdict(list)
        for event in trace:
            args = event.get("args", {})
            if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
                rows[args.get("op_name", "?"), args.get("provider", "?")].append(event["dur"] / 1e3)
        return rows
