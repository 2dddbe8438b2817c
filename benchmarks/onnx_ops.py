"""Where ONNX Runtime spends a graph's time: kernel ms and node count per operator type, graph against graph.

Default: ViT-Ti/16 at 224 (random weights) exported to ONNX as FP32 and with each INT8 recipe named in
``--recipes`` (the VNNI per-call recipe and the static QDQ one), each bundle verified as usual and reused from
``--out`` when its manifest matches. ``--graphs a.onnx,b.onnx``: those files instead (e.g. the rates of a
token-merge bundle; the first is the baseline). Every session runs with ONNX Runtime's profiler on
(``--threads`` intra-op threads); the table sums each operator type's kernel time per inference over ``--runs``
runs after a warm-up, with its node count, beside the wall time of the same runs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edgekit._native import quiet_toolchain_logs
from edgekit.bundle import read_bundle
from edgekit.cpu import host_cpu
from edgekit.exporters.pipeline import export

MODEL = "vit_tiny"
TOP = 10  # operator types per column


def bundle_for(out: Path, recipe: str | None, console: Console) -> Path:
    name = f"{MODEL}-onnx-{recipe or 'fp32'}"
    path = out / name
    if (path / "edgekit.json").exists():
        manifest = read_bundle(path).manifest
        quant = manifest.quantization
        if manifest.passed and (quant.scheme.recipe if quant else None) == recipe:
            return path
    console.log(f"exporting {name}")
    precision = {"precision": "int8", "int8_recipe": recipe} if recipe else {}
    export(MODEL, format="onnx", out_dir=path, samples=8, calib_samples=32, allow_mismatch=True, **precision)
    return path


def profile(model: Path, threads: int, runs: int, warmup: int = 5) -> tuple[float, Counter, Counter]:
    """Wall ms per run, kernel ms per run by operator type, and nodes run per inference by operator type."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(model.parent / "ort-profile")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
            for i in session.get_inputs()}  # fmt: skip
    for _ in range(warmup):
        session.run(None, feed)
    start = time.perf_counter()
    for _ in range(runs):
        session.run(None, feed)
    wall = (time.perf_counter() - start) / runs * 1e3
    trace = Path(session.end_profiling())
    kernels: Counter = Counter()
    nodes: Counter = Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernels[event["args"]["op_name"]] += event["dur"] / 1e3 / (runs + warmup)  # us -> ms per run
            nodes[event["args"]["op_name"]] += 1
    os.remove(trace)
    return wall, kernels, Counter({op: n // (runs + warmup) for op, n in nodes.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/bench-onnx-ops")
    parser.add_argument("--recipes", default="onnx-vnni,onnx-vnni-static")
    parser.add_argument("--graphs", help="comma-separated .onnx files to compare instead (the first: baseline)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    quiet_toolchain_logs()
    console = Console(width=120)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.graphs:
        models = {Path(g).stem: Path(g) for g in args.graphs.split(",")}
        what = ", ".join(dict.fromkeys(Path(g).parent.name for g in args.graphs.split(",")))
    else:
        models = {(recipe or "fp32"): bundle_for(out, recipe, console) / "model.onnx"
                  for recipe in (None, *args.recipes.split(","))}  # fmt: skip
        what = f"{MODEL} 224"
    measured = {label: profile(path, args.threads, args.runs) for label, path in models.items()}
    cpu = host_cpu()
    table = Table(title=f"ONNX Runtime kernel ms per inference (nodes), {what} — {cpu.name} ({cpu.isa}), "
                        f"{args.threads} threads, {args.runs} runs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    table.add_column("operator")
    for label in measured:
        table.add_column(label, justify="right")
    ops = sorted({op for _, kernels, _ in measured.values() for op, _ in kernels.most_common(TOP)},
                 key=lambda op: -max(k.get(op, 0.0) for _, k, _ in measured.values()))  # fmt: skip
    for op in ops:
        table.add_row(op, *(f"{k[op]:.2f} ({n[op]})" if op in k else "-" for _, k, n in measured.values()))
    table.add_row("all kernels", *(f"{sum(k.values()):.2f} ({sum(n.values())})" for _, k, n in measured.values()),
                  style="bold")  # fmt: skip
    base = next(iter(measured.values()))[0]
    table.add_row("wall ms (speed-up)", *(f"{wall:.2f} ({base / wall:.2f}x)" for wall, _, _ in measured.values()))
    console.print(table)


if __name__ == "__main__":
    main()
