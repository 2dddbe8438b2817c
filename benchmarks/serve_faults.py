"""Throughput and end-to-end latency of a replicated split plan under faults, with 8 concurrent clients.

A vit_digits split over 3 loopback worker processes (ONNX shards, one runtime thread each), every shard on 2 of
them (``--replicas 2``), driven through ``SplitCoordinator.infer`` from 8 threads. Scenarios:

- no faults;
- one worker SIGKILLed a third of the way in (its shards fail over to their replicas);
- one worker slowed: SIGSTOP for 150 ms out of every 500 ms, with hedging off and with ``--hedge-after auto``.

Each scenario's timeline (one lane per worker) is written to ``--out`` as a PNG.

Every answer is checked against the answer the plan gave before any fault (bit for bit). All processes share
this machine's cores, so the numbers say what failover and hedging cost and save here, not on real devices.
When ``edgekit serve`` lands, the same scenarios apply with its endpoint as the client.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from edgekit._native import quiet_toolchain_logs
from edgekit.cpu import host_cpu
from edgekit.data import load_dataset
from edgekit.splitter import SplitCoordinator, load_plan
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.local import start_local_worker
from edgekit.splitter.replicas import with_replicas
from edgekit.splitter.runreport import build_report
from edgekit.splitter.timeline import plot_timeline
from edgekit.tables import WrappingTable

DEVICES = ("dev0", "dev1", "dev2")
VICTIM = "dev1"
CLIENTS = 8
STOP_MS, CYCLE_MS = 150, 500


def make_plan(out: Path, console: Console, given: Path | None):
    from edgekit.splitter.edvit import SplitSettings, plan_split

    if given:  # any plan: every device taken to run every format of its shards, each shard on two of them
        plan = load_plan(given)
        formats = tuple(sorted({s.format for s in plan.shards}))
        devices = [dataclasses.replace(d, runtimes=formats) for d in plan.devices]
        return with_replicas(plan, 2, devices)
    root = out / "plan"
    if (root / "plan.json").is_file():
        return load_plan(root)
    devices = [DeviceSpec(name, None, 50_000_000, 5.0, "onnx") for name in DEVICES]
    settings = SplitSettings(epochs=15, finetune_epochs=6, replicas=2)
    with console.status("planning the split (vit_digits, 3 devices, 2 copies per shard)", spinner="dots"):
        plan_split("vit_digits", devices, root, settings=settings)
    return load_plan(root)


def start_workers(out: Path, plan) -> dict:
    """Fresh workers with empty workdirs: every scenario deploys its shards (in parallel) from scratch."""
    run = out / "workers" / str(time.monotonic_ns())
    return {d.name: start_local_worker(d.name, run / d.name, "--threads", "1") for d in plan.devices}


def scenario(plan, out: Path, images, reference, total: int, fault: str, hedge: str | None) -> dict:
    workers = start_workers(out, plan)
    records = []
    try:
        addresses = {d: w.address for d, w in workers.items()}
        with SplitCoordinator(plan, addresses, timeout=180, hedge_after=hedge, on_record=records.append) as c:
            c.deploy()
            c.timeout = 5.0
            for i in range(60):  # warm-up: runtimes, connections and the hedge percentile
                c.infer(images[i % len(images)][None])
            records.clear()
            stop = threading.Event()
            cycler = threading.Thread(target=cycle, args=(workers[VICTIM], stop), daemon=True)
            if fault == "slowed":
                cycler.start()
            ids = itertools.count()
            wrong, errors = [], []

            def client() -> None:
                while (i := next(ids)) < total:
                    if fault == "killed" and i == total // 3:
                        workers[VICTIM].proc.send_signal(signal.SIGKILL)
                    k = i % len(images)
                    try:
                        logits = c.infer(images[k][None]).logits
                    except Exception as exc:  # noqa: BLE001 -- counted and shown
                        errors.append(str(exc))
                        continue
                    if not np.array_equal(logits, reference[k]):
                        wrong.append(i)

            start = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            stop.set()
            if cycler.is_alive():
                cycler.join()
            report = build_report(list(records), wall, workers=addresses, hedge=c.hedge)
            plot_timeline(report.records, out / f"timeline-{fault}-{hedge or 'off'}.png", list(addresses),
                          f"{fault}, hedging {hedge or 'off'}")  # fmt: skip
    finally:
        for w in workers.values():
            w.stop(signal.SIGKILL)
    return {"report": report, "wrong": len(wrong), "errors": len(errors)}


def cycle(worker, stop: threading.Event) -> None:
    while not stop.is_set():
        worker.proc.send_signal(signal.SIGSTOP)
        time.sleep(STOP_MS / 1e3)
        worker.proc.send_signal(signal.SIGCONT)
        stop.wait((CYCLE_MS - STOP_MS) / 1e3)
    worker.proc.send_signal(signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/bench-serve-faults"))
    parser.add_argument("--plan", type=Path, help="Use this plan directory (else one is made under --out).")
    parser.add_argument("--requests", type=int, default=1200, help="Requests per scenario, over 8 clients.")
    args = parser.parse_args()
    console = Console()
    quiet_toolchain_logs()
    args.out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(args.out, console, args.plan)
    images = load_dataset("digits", tuple(plan.input["shape"])).x_test[:64]
    workers = start_workers(args.out, plan)
    try:
        unreplicated = dataclasses.replace(plan, shards=tuple(dataclasses.replace(s, replicas=()) for s in plan.shards))
        with SplitCoordinator(unreplicated, {d: w.address for d, w in workers.items()}, timeout=180) as c:
            c.deploy()
            reference = [c.infer(images[k][None]).logits for k in range(len(images))]
    finally:
        for w in workers.values():
            w.stop(signal.SIGKILL)
    title = (f"replicated split plan (3 workers x 2 copies), {CLIENTS} clients, {args.requests} requests a row; "
             f"all on one {host_cpu().name}, {os.cpu_count()} cores, shared")  # fmt: skip
    table = WrappingTable(title=title)
    for name in ("scenario", "ok", "err", "req/s", "p50 ms", "p99 ms", "retries", "hedges (won)"):
        table.add_column(name, justify="left" if name == "scenario" else "right")
    stalled = f"{VICTIM} stopped {STOP_MS} ms of {CYCLE_MS}"
    labels = {"none": "no faults", "killed": f"{VICTIM} killed", "slowed": stalled}
    wrong = 0
    for fault, hedge in (("none", None), ("killed", None), ("slowed", None), ("slowed", "auto")):
        with console.status(f"{fault}, hedging {hedge or 'off'}", spinner="dots"):
            result = scenario(plan, args.out, images, reference, args.requests, fault, hedge)
        r = result["report"]
        wrong += result["wrong"]
        table.add_row(
            f"{labels[fault]}, hedging {hedge or 'off'}", str(r.answered), str(result["errors"]),
            f"{r.throughput_rps:.0f}", f"{r.latency_ms.p50:.1f}", f"{r.latency_ms.p99:.1f}", str(r.retries),
            f"{r.hedges} ({r.hedge_wins})",
        )  # fmt: skip
    console.print(table)
    console.print(f"answers that differ from the pre-fault answer, bit for bit: {wrong}")


if __name__ == "__main__":
    main()
