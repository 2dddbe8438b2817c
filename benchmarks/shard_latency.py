"""Measure what the scaling simulation resamples: per-shard compute and round trip on real loopback workers.

Plans one tiny split (vit_digits, depth 2; three shards, one each in ONNX, LiteRT and ExecuTorch: the plan the
split tests build), starts one worker process per shard on loopback with one runtime thread each, deploys,
warms up, and then sends ``--requests`` held-out digits one at a time through ``SplitCoordinator.infer``.
Recorded per request: every shard's compute (inside the worker's runtime) and round trip (as the coordinator saw
it), the end-to-end latency, and the coordinator process's CPU time for the request (``time.process_time``,
which counts gRPC's threads too: what fan-out, encoding, decoding and fusion cost the coordinator). Recorded per
worker: how long a restarted worker process takes until it answers health with its stored shard loaded.

The JSON goes to ``benchmarks/data/shard_latency.json`` (``--out``) with the CPU named; the simulator
(``edgekit.splitter.simulate``) and its tests read it. The workers share this machine's cores with the
coordinator, so the round trips include that contention; the file says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edgekit._native import quiet_toolchain_logs
from edgekit.cpu import host_cpu
from edgekit.data import load_dataset
from edgekit.jsonio import write_json
from edgekit.splitter import SplitCoordinator
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.edvit import SplitSettings, plan_split
from edgekit.splitter.local import LocalWorkers, start_local_worker

DEFAULT_OUT = Path(__file__).with_name("data") / "shard_latency.json"
FORMATS = ("onnx", "tflite", "pte")
CONFIG = {"depth": 2}  # the split tests' tiny plan (tests/splitter/conftest.py)


def build_plan(root: Path, console: Console):
    devices = [DeviceSpec(f"dev{i}", None, 50_000_000, 5.0, fmt) for i, fmt in enumerate(FORMATS)]
    settings = SplitSettings(epochs=4, finetune_epochs=1, fusion_epochs=15, samples=4)
    with console.status("planning the tiny split (3 exports)", spinner="dots") as status:
        return plan_split("vit_digits", devices, root / "plan", config=CONFIG, settings=settings,
                          on_stage=status.update)  # fmt: skip


def measure_requests(coordinator: SplitCoordinator, x: np.ndarray, count: int) -> dict:
    shards: dict[str, dict[str, list[float]]] = {}
    end_to_end, cpu = [], []
    for i in range(count):
        cpu_start = time.process_time()
        out = coordinator.infer(x[i % len(x) : i % len(x) + 1])
        cpu.append((time.process_time() - cpu_start) * 1e3)
        end_to_end.append(out.latency_ms)
        for call in out.calls:
            row = shards.setdefault(call.shard, {"compute_ms": [], "round_trip_ms": []})
            row["compute_ms"].append(call.compute_ms)
            row["round_trip_ms"].append(call.round_trip_ms)
            row["bytes_sent"], row["bytes_received"] = call.bytes_sent, call.bytes_received
    return {"shards": shards, "end_to_end_ms": end_to_end, "coordinator_cpu_ms": cpu}


def measure_restarts(plan, workers: LocalWorkers, rounds: int) -> list[float]:
    """Seconds from a worker process's start to its health answer with the stored shard loaded."""
    seconds = []
    for _ in range(rounds):
        for name, worker in list(workers.workers.items()):
            worker.stop()
            start = time.perf_counter()
            workers.workers[name] = start_local_worker(name, worker.workdir, "--threads", "1")
            with SplitCoordinator(plan, workers.addresses, timeout=30) as c:
                c.wait_ready()
            seconds.append(time.perf_counter() - start)
    return seconds


def rounded(values: list[float]) -> list[float]:
    return [round(float(v), 4) for v in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=1, help="restart rounds (one restart per worker each)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    quiet_toolchain_logs()
    console = Console(width=160)
    with tempfile.TemporaryDirectory(prefix="edgekit-shard-latency-") as tmp:
        plan = build_plan(Path(tmp), console)
        x = load_dataset("digits", tuple(plan.input["shape"])).x_test
        with LocalWorkers([d.name for d in plan.devices], root=Path(tmp) / "workers", threads=1) as workers:
            with SplitCoordinator(plan, workers.addresses, timeout=30) as c:
                c.deploy()
                measure_requests(c, x, args.warmup)
                measured = measure_requests(c, x, args.requests)
            restarts = measure_restarts(plan, workers, args.restarts)
    shards = []
    for shard in plan.shards:
        row = measured["shards"][shard.name]
        shards.append({
            "shard": shard.name, "format": shard.format, "parameters": shard.parameters,
            "bundle_bytes": shard.size_bytes, "bytes_sent": row["bytes_sent"], "bytes_received": row["bytes_received"],
            "compute_ms": rounded(row["compute_ms"]), "round_trip_ms": rounded(row["round_trip_ms"]),
        })  # fmt: skip
    record = {
        "what": "per-shard compute and round trip of a tiny 3-shard vit_digits split on loopback worker processes",
        "cpu": host_cpu().name,
        "cores": os.cpu_count(),
        "load": "measured while other sessions shared the machine's cores; workers and coordinator share them too",
        "date": dt.date.today().isoformat(),
        "requests": args.requests,
        "shards": shards,
        "end_to_end_ms": rounded(measured["end_to_end_ms"]),
        "coordinator_cpu_ms": rounded(measured["coordinator_cpu_ms"]),
        "restart_seconds": rounded(restarts),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, record)
    table = Table(title=f"{args.requests} requests on loopback, {record['cpu']} ({record['cores']} cores, loaded)")
    for col in ("shard", "format", "compute p50", "compute p99", "round trip p50", "round trip p99", "bytes out/in"):
        table.add_column(col, justify="right")
    for s in shards:
        c, r = np.asarray(s["compute_ms"]), np.asarray(s["round_trip_ms"])
        table.add_row(s["shard"], s["format"], *(f"{np.percentile(v, q):.3f} ms" for v in (c, r) for q in (50, 99)),
                      f"{s['bytes_sent']}/{s['bytes_received']}")  # fmt: skip
    console.print(table)
    e2e, cpu = np.asarray(record["end_to_end_ms"]), np.asarray(record["coordinator_cpu_ms"])
    restart = ", ".join(f"{s:.2f}" for s in restarts)
    console.print(f"end to end p50 {np.median(e2e):.3f} ms, p99 {np.percentile(e2e, 99):.3f} ms; coordinator CPU "
                  f"p50 {np.median(cpu):.3f} ms per request; worker restart {restart} s")  # fmt: skip
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
