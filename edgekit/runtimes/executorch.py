"""ExecuTorch runtime (``.pte``): the program's method run through ExecuTorch's Python bindings."""

from __future__ import annotations

import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgekit.errors import MissingDependencyError
from edgekit.runtimes.base import Runtime
from edgekit.types import GraphSpec, TensorSpec

# c10::ScalarType codes as TensorInfo.dtype() reports them
_SCALAR_TYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 11: "bool"}


class ExecuTorchRuntime(Runtime):
    name = "ExecuTorch runtime"
    native_packages = ("executorch", "torch")

    @classmethod
    def import_native(cls) -> None:
        try:
            import executorch.runtime  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            raise MissingDependencyError("executorch", "executorch", "running .pte bundles") from None

    def _open(self, graph: GraphSpec | None) -> None:
        self.import_native()
        import torch
        from executorch.runtime import Runtime as _ETRuntime

        self._torch = torch
        if self.threads:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(int(self.threads))
        self._program = _ETRuntime.get().load_program(self.model_file)
        self._entry = (graph.entry if graph else None) or "forward"
        self._method = self._program.load_method(self._entry)

    def _introspect(self) -> GraphSpec:
        meta = self._program.metadata(self._entry)

        def spec(prefix: str, info, i: int, count: int) -> TensorSpec:
            name = prefix if count == 1 else f"{prefix}_{i}"
            return TensorSpec(name, tuple(info.sizes()), _SCALAR_TYPES.get(int(info.dtype()), "float32"))

        n_in, n_out = meta.num_inputs(), meta.num_outputs()
        return GraphSpec(
            name=self._entry,
            file=self.model_file.name,
            entry=self._entry,
            inputs=tuple(spec("input", meta.input_tensor_meta(i), i, n_in) for i in range(n_in)),
            outputs=tuple(spec("output", meta.output_tensor_meta(i), i, n_out) for i in range(n_out)),
        )

    def _run_native(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        tensors = [self._torch.from_numpy(a) for a in arrays]
        return [t.numpy() if hasattr(t, "numpy") else np.asarray(t) for t in self._method.execute(tensors)]

    def close(self) -> None:
        self._method = None
        self._program = None

    @classmethod
    def operator_times(
        cls, model_file: Path, graph: GraphSpec, inputs: dict[str, np.ndarray], runs: int, threads: int | None
    ) -> dict[tuple[str, str], list[float]]:
        """ETDump recorded by the runtime, read with executorch.devtools.Inspector: XNNPACK reports each of its
        kernels, so delegated ops show up by kernel (``Convolution (NHWC, F32) IGEMM``)."""
        entry = graph.entry or "forward"
        try:
            import torch
            from executorch.devtools import Inspector
            from executorch.runtime import Runtime
        except ImportError:
            raise MissingDependencyError("executorch", "executorch", "profiling .pte bundles") from None
        program = Runtime.get().load_program(model_file, enable_etdump=True)  # timings only, no tensor dumps
        method = program.load_method(entry)
        tensors = [torch.from_numpy(a) for a in inputs.values()]
        for _ in range(runs):
            method.execute(tensors)
        with tempfile.TemporaryDirectory() as tmp:
            etdump, debug = Path(tmp) / "run.etdp", Path(tmp) / "debug.bin"
            program.write_etdump_result_to_file(str(etdump), str(debug))
            frame = Inspector(etdump_path=str(etdump)).to_dataframe()
        rows: dict[tuple[str, str], list[float]] = defaultdict(list)
        for _, event in frame[frame["event_block_name"] == "Execute"].iterrows():
            name = str(event["event_name"])
            if name in ("DELEGATE_CALL", "Method::execute", "OPERATOR_CALL"):
                continue  # containers of the events below
            placement = "xnnpack" if event["is_delegated_op"] else "portable"
            op = re.sub(r"\s*#\d+$", "", name).removeprefix("native_call_")
            rows[op, placement] += list(event["raw"])
        return rows
