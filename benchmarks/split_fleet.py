"""``benchmarks/split.py --fleet``: the full model on one emulated device vs edvit vs pipeline on N of them.

Each device is an emulated Pi-class host (``edgekit.splitter.emulate``; root): its own network namespace on
one bridge, a ``tc tbf`` link, a cgroup v1 CPU quota and a memory limit; its worker runs inside with one
runtime thread. The coordinator runs on the host, unconstrained. The device's GFLOP/s for planning is measured
inside one emulated device (numpy matmul, one thread). Quotas well below one core keep the emulated numbers
stable on a machine other people are using: 0.4 of a core is 0.4 whether the machine is idle or not, as long
as the device gets it; ``--shares`` (cpu.shares of each device's group, default 4096: four ordinary processes'
weight) makes sure it does while other work keeps the cores busy.

Per strategy: held-out accuracy through the workers, largest shard and all shards against the full model's
bundle, per-shard classes (edvit), median end-to-end latency of single requests, throughput of a stream with
requests in flight, and the bytes one request moves over the links.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekit.cpu import host_cpu
from edgekit.data import load_dataset
from edgekit.splitter import SplitCoordinator, load_plan
from edgekit.splitter.devices import DeviceSpec, EmulateSpec
from edgekit.splitter.edvit import SplitSettings, plan_split
from edgekit.splitter.emulate import EmulatedFleet
from edgekit.splitter.local import start_local_worker
from edgekit.splitter.pipeline_run import PipelineRunner

TAG, SUBNET, FIRST_PORT = "ef", "10.242.0", 51300
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


_GFLOPS = """
import time, numpy as np
a = np.ones((256, 256), np.float32); b = np.ones((256, 256), np.float32); a @ b
start, n = time.perf_counter(), 0
while time.perf_counter() - start < 2.0:
    a @ b; n += 1
print(n * 2 * 256**3 / (time.perf_counter() - start) / 1e9)
"""


def device_gflops(fleet: EmulatedFleet) -> float:
    """Matmul GFLOP/s inside the first emulated device on one thread, over 2 s of wall time: long against the
    quota's 10 ms period, so the quota is in it (a median of single products, each shorter than a period, is not)."""
    out = fleet.hosts[0].run(sys.executable, "-c", _GFLOPS, capture_output=True, text=True, check=True, timeout=300,
                             env={**os.environ, **SINGLE_THREAD})  # fmt: skip
    return float(out.stdout.split()[-1])


class FleetWorkers:
    """One worker per emulated device, inside its namespace and cgroups, on the bridge address."""

    def __init__(self, fleet: EmulatedFleet, root: Path, names: list[str]):
        self.workers = []
        try:
            for i, name in enumerate(names):
                host = fleet.host(name)
                self.workers.append(
                    start_local_worker(
                        name,
                        root / name,
                        "--insecure",
                        "--threads",
                        "1",
                        "--no-announce",
                        host=host.address,
                        port=FIRST_PORT + i,
                        prefix=host.prefix(),
                        env=SINGLE_THREAD,
                        ready_seconds=120,
                    )  # fmt: skip
                )
        except BaseException:
            self.close()
            raise

    @property
    def addresses(self) -> dict[str, str]:
        return {w.name: w.address for w in self.workers}

    def close(self) -> None:
        for w in self.workers:
            w.stop()


def _stream(infer: Callable, xs, in_flight: int) -> float:
    """Requests per second with ``in_flight`` requests outstanding (a coordinator call per thread)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(infer, xs))
    return len(xs) / (time.perf_counter() - start)


def measure_fused(plan, addresses, split, in_flight: int, samples: int) -> dict:
    """The full model or an edvit plan through its workers: accuracy, single latency, stream, bytes."""
    with SplitCoordinator(plan, addresses, timeout=60) as c:
        c.deploy()
        c.evaluate(split.x_test[:10], split.y_test[:10])  # warm up runtimes and connections
        evaluation = c.evaluate(split.x_test, split.y_test)
        xs = [split.x_test[i % len(split.x_test)][None] for i in range(samples)]
        throughput = _stream(c.infer, xs, in_flight)
    per_request = sum(call.bytes_sent + call.bytes_received for call in evaluation.calls) / evaluation.samples
    return {"accuracy": evaluation.accuracy, "latency_ms": statistics.median(evaluation.latency_ms),
            "throughput_per_s": throughput, "bytes_per_request": per_request}  # fmt: skip


def measure_pipeline(plan, addresses, split, in_flight: int, samples: int) -> dict:
    with PipelineRunner(plan, addresses, timeout=60) as runner:
        runner.deploy()
        runner.stream([split.x_test[i][None] for i in range(10)], in_flight=1)
        accuracy, single = runner.evaluate(split.x_test, split.y_test, in_flight=1)
        xs = [split.x_test[i % len(split.x_test)][None] for i in range(samples)]
        stream = runner.stream(xs, in_flight=in_flight)
    return {"accuracy": accuracy, "latency_ms": single.latency_ms, "throughput_per_s": stream.throughput_per_s,
            "bytes_per_request": statistics.mean(o.bytes_total for o in single.outputs),
            "stream_latency_ms": stream.latency_ms}  # fmt: skip


def run_n(n: int, weights: Path, out: Path, args, spec: EmulateSpec, console: Console, seed_spread) -> list[dict]:
    names = [f"pi{i}" for i in range(n)]
    rows = []
    fleet = EmulatedFleet([(name, spec) for name in names], tag=TAG, subnet=SUBNET, shares=args.shares)
    with fleet:
        gflops = device_gflops(fleet)
        console.print(f"N={n}: {n} emulated devices at {spec.cpus} cpu, {spec.link_mbps:g} Mbit/s, "
                      f"{spec.memory_bytes // 10**6} MB; measured {gflops:.2f} GFLOP/s inside one")  # fmt: skip
        devices = [DeviceSpec(name, None, spec.memory_bytes, gflops, "onnx", spec.link_mbps, emulate=spec)
                   for name in names]  # fmt: skip
        split = load_dataset("digits", (1, 1, 8, 8))
        keep = 1 / (args.shrink * n) if args.shrink else None  # None: each shard at most 1/N of the model
        edvit = SplitSettings(finetune_epochs=args.finetune_epochs, partition=args.partition, keep_ratio=keep)
        wanted = {"edvit": (f"fleet-edvit-n{n}", devices, edvit),
                  "pipeline": (f"fleet-pipeline-n{n}", devices, SplitSettings(strategy="pipeline"))}  # fmt: skip
        if n == min(int(v) for v in args.devices.split(",")):
            wanted = {"full": ("fleet-full", devices[:1], SplitSettings(keep_ratio=1.0, finetune_epochs=0)), **wanted}
        plans = {}
        with console.status(f"N={n}: planning", spinner="dots") as status:
            for kind, (name, on, settings) in wanted.items():
                if args.reuse and (out / name / "plan.json").is_file():
                    plans[kind] = load_plan(out / name)  # planned by an earlier run with the same weights
                    continue
                plans[kind] = plan_split("vit_digits", on, out / name, weights=weights, settings=settings,
                                         on_stage=status.update)  # fmt: skip
        workers = FleetWorkers(fleet, out / f"fleet-work-n{n}", names)
        try:
            for kind, plan in plans.items():
                with console.status(f"N={n}: running {kind} on the emulated fleet", spinner="dots"):
                    used = {s.device for s in plan.shards}
                    addresses = {d: a for d, a in workers.addresses.items() if d in used}
                    measure = measure_pipeline if kind == "pipeline" else measure_fused
                    result = measure(plan, addresses, split, max(2, len(plan.shards)), args.stream_samples)
                rows.append(_row(kind, n, plan, result, gflops, spec, seed_spread if kind == "edvit" else None))
        finally:
            workers.close()
    return rows


def _row(kind, n, plan, result, gflops, spec, seed_spread) -> dict:
    report = plan.report
    full_parameters = report["full"].get("feature_parameters", report["full"]["parameters"])
    return {
        "strategy": kind, "n": 1 if kind == "full" else n, "stages": len(plan.shards), **result,
        "full_accuracy": report["full"]["accuracy"],
        "largest_params": max(s.parameters for s in plan.shards),
        "total_params": sum(s.parameters for s in plan.shards),
        "full_params": full_parameters, "largest_bytes": max(s.size_bytes for s in plan.shards),
        "total_bytes": sum(s.size_bytes for s in plan.shards),
        "classes": [list(s.classes) for s in plan.shards] if kind == "edvit" else None,
        "blocks": [s["blocks"] for s in report["pipeline"]["stages"]] if kind == "pipeline" else None,
        "estimated": report["pipeline"]["latency_ms"] if kind == "pipeline" else report["split"]["critical_path_ms"],
        "fusion_seed_accuracy": seed_spread(plan, load_dataset("digits", (1, 1, 8, 8))) if seed_spread else None,
        "gflops": gflops, "cpus": spec.cpus, "link_mbps": spec.link_mbps,
    }  # fmt: skip


def table(rows: list[dict], config: dict, full_params: int, spec: EmulateSpec) -> Table:
    cpu = f"{host_cpu().summary()}, load {os.getloadavg()[0]:.1f}"
    title = (f"vit_digits {config} ({full_params:,} parameters) on digits (359 held-out); emulated Pi-class devices: "
             f"{spec.cpus} cpu (cgroup quota over 10 ms), {spec.link_mbps:g} Mbit/s tbf, "
             f"{spec.memory_bytes // 10**6} MB each; host {cpu}")  # fmt: skip
    t = Table(title=title)
    for col in ("strategy", "N", "stages", "model acc", "accuracy", "largest shard", "total size", "single ms",
                "est ms", "speed-up", "stream /s", "vs full", "bytes/req", "classes or blocks",
                "fusion seeds 0-2"):  # fmt: skip
        t.add_column(col, justify="right")
    full = next((r for r in rows if r["strategy"] == "full"), None)
    for r in rows:
        base_ms = full["latency_ms"] if full else float("nan")
        base_tp = full["throughput_per_s"] if full else float("nan")
        parts = r["classes"] or r["blocks"]
        t.add_row(
            r["strategy"], str(r["n"]), str(r["stages"]), f"{r['full_accuracy']:.2%}", f"{r['accuracy']:.2%}",
            f"{r['full_params'] / r['largest_params']:.1f}x smaller", f"{r['total_params'] / r['full_params']:.2f}x",
            f"{r['latency_ms']:.2f}", f"{r['estimated']:.2f}", f"{base_ms / r['latency_ms']:.2f}x",
            f"{r['throughput_per_s']:.1f}", f"{r['throughput_per_s'] / base_tp:.2f}x",
            f"{r['bytes_per_request']:,.0f}", " ".join(str(p) for p in parts) if parts else "all",
            " / ".join(f"{a:.2%}" for a in r["fusion_seed_accuracy"]) if r["fusion_seed_accuracy"] else "-",
        )  # fmt: skip
    return t


def markdown(shown: Table, count: int) -> str:
    lines = ["| " + " | ".join(str(c.header) for c in shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(str(c._cells[i]) for c in shown.columns) + " |" for i in range(count)]
    return "\n".join(lines)


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def run_fleet(args, weights: Path, out: Path, config: dict, console: Console, seed_spread) -> list[dict]:
    if os.geteuid() != 0:
        console.print("--fleet needs root (network namespaces, tc, cgroups)")
        raise SystemExit(2)
    subprocess.run(["tc", "-V"], capture_output=True, check=True)
    spec = EmulateSpec(args.cpus, args.link_mbps, args.memory_mb * 10**6)
    # SIGTERM (a timeout, a CI cancel) unwinds like Ctrl-C, so the fleet is torn down on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    rows = []
    for n in (int(v) for v in args.devices.split(",")):
        rows.extend(run_n(n, weights, out, args, spec, console, seed_spread))
        shown = table(rows, config, rows[0]["full_params"], spec)
        console.print(shown)  # as it goes: a late N may not finish
        if getattr(args, "markdown", False):
            print(markdown(shown, len(rows)))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows
