"""Per-operator time where the runtime exposes it: one table of op type -> time share, and placement.

- ONNX Runtime: its built-in profiler (a Chrome-trace JSON of every node run, with the provider).
- ExecuTorch: ETDump recorded by the runtime, read with ``executorch.devtools.Inspector``; XNNPACK
  reports each of its kernels, so delegated ops show up by kernel (``Convolution (NHWC, F32) IGEMM``).
- LiteRT: the Python interpreter API has no per-op timing; the table says so instead of guessing.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.bundle import Bundle
from edgekit.errors import MissingDependencyError, UnsupportedOptionError


@dataclass(frozen=True)
class OpStat:
    op: str
    placement: str  # where it ran: "xnnpack", "portable", "CPUExecutionProvider" ...
    calls: int
    total_ms: float
    share: float  # of the summed op time


def _stats(rows: dict[tuple[str, str], list[float]], runs: int) -> list[OpStat]:
    """Per op and placement: calls and milliseconds per run, from every recorded event (ms)."""
    total = sum(sum(v) for v in rows.values()) or 1.0
    out = [OpStat(op, where, round(len(v) / runs), sum(v) / runs, sum(v) / total) for (op, where), v in rows.items()]
    return sorted(out, key=lambda s: -s.total_ms)


def onnx_ops(model_file: Path, inputs: dict[str, np.ndarray], runs: int, threads: int | None) -> list[OpStat]:
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
    return _stats(rows, runs)


def executorch_ops(model_file: Path, inputs: dict[str, np.ndarray], runs: int, entry: str) -> list[OpStat]:
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
    return _stats(rows, runs)


def operator_profile(bundle: Bundle, inputs: dict[str, np.ndarray], runs: int = 20, threads: int | None = None):
    graph = bundle.graph()
    model_file = bundle.file(graph.file)
    if bundle.format == "onnx":
        return onnx_ops(model_file, inputs, runs, threads)
    if bundle.format == "pte":
        return executorch_ops(model_file, inputs, runs, graph.entry or "forward")
    raise UnsupportedOptionError(
        "--ops", bundle.format, ["pte (ETDump)", "onnx (ONNX Runtime profiler); LiteRT's Python API has no op timing"]
    )
