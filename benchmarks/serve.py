"""`edgekit serve` under load: throughput and end-to-end p50 / p99 latency with N concurrent clients.

Rows: one bundle served in-process (vit_digits at depth 2, ONNX, exported and verified here), over HTTP (the
binary tensor extension, as tritonclient.http sends by default) and over gRPC (raw_input_contents); then a
split plan of the same model, every shard on 2 of 3 ONNX worker processes (``--replicas 2``), behind
``edgekit serve PLANDIR``: without faults over both transports, then over gRPC with faults, each on fresh
workers --

- one worker SIGKILLed a third of the way into the row (its shards fail over to their replicas);
- one worker slowed: SIGSTOP for 150 ms of every 500 ms, with hedging off and with ``--hedge-after auto``.

Each client is a thread with its own keep-alive connection or gRPC channel, sending batch-1 requests back to
back until the row's request count is reached (or its time cap). Every answer is checked against the logits
computed here (the bundle's runtime; the plan's shards fused locally): a wrong or lost answer (no answer, or
an error the server did not name) fails the row instead of printing; an error the server named (HTTP 503 /
gRPC UNAVAILABLE: no replica of a shard answered in time) is counted in the ``err`` column. Retries and
hedges come from the server's own run report (``edgekit serve --report``; warm-up requests included). Server,
workers and clients share this machine's cores: the numbers say what the endpoint costs on this CPU, not what
separate devices would do. The CPU and the load average are printed with the table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edgekit._native import quiet_toolchain_logs
from edgekit.cpu import host_cpu
from edgekit.serving.grpc_codec import proto
from edgekit.serving.local import LocalServer, start_local_server

CONFIG = {"depth": 2}
VICTIM = "pi-1"
STOP_MS, CYCLE_MS = 150, 500
Call = Callable[[], np.ndarray]


class NamedError(Exception):
    """The server answered with the protocol's error for a failed worker: counted, not a lost answer."""


def http_caller(server: LocalServer, input_name: str, x: np.ndarray) -> Callable[[], Call]:
    header = json.dumps({"inputs": [{"name": input_name, "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()  # fmt: skip
    body, path = header + x.tobytes(), f"/v2/models/{server.model}/infer"
    headers = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}

    def make() -> Call:
        conn = http.client.HTTPConnection(server.host, server.http_port, timeout=30)

        def call() -> np.ndarray:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status == 503:
                raise NamedError(json.loads(payload)["error"])
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
            n = int(response.getheader("Inference-Header-Content-Length"))
            return np.frombuffer(payload[n:], "<f4")

        return call

    return make


def grpc_caller(server: LocalServer, input_name: str, x: np.ndarray) -> Callable[[], Call]:
    import grpc

    pb, pb_grpc = proto()
    request = pb.ModelInferRequest(model_name=server.model, outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(
        name="logits")])  # fmt: skip
    request.inputs.add(name=input_name, datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())

    def make() -> Call:
        # a channel per client: one connection each, as separate applications would have
        channel = grpc.insecure_channel(server.grpc_address, options=[("grpc.use_local_subchannel_pool", 1)])
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        def call() -> np.ndarray:
            try:
                return np.frombuffer(stub.ModelInfer(request, timeout=30).raw_output_contents[0], "<f4")
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE and exc.details().startswith("worker "):
                    raise NamedError(exc.details()) from exc
                raise

        return call

    return make


def load(make: Callable[[], Call], expected: np.ndarray, clients: int, requests: int, cap_s: float,
         before: Callable[[int], None] | None = None) -> dict:  # fmt: skip
    """``requests`` calls in all from ``clients`` threads; every answer compared with ``expected``.

    ``before(i)`` runs before the i-th request is sent (a fault injected at a point of the row)."""
    latencies: list[float] = []
    wrong: list[str] = []
    named: list[str] = []
    remaining = [requests]
    lock = threading.Lock()
    calls = [make() for _ in range(clients)]
    for call in calls:  # warm every connection and the server's runtime
        for _ in range(3):
            call()
    deadline = time.monotonic() + cap_s

    def client(call: Call) -> None:
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
                index = requests - remaining[0] - 1
            if before:
                before(index)
            start = time.perf_counter()
            try:
                got = call()
            except NamedError as exc:
                with lock:
                    named.append(str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 -- counted, then the row fails
                with lock:
                    wrong.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = (time.perf_counter() - start) * 1e3
            with lock:
                latencies.append(elapsed)
                if not np.allclose(got, expected.ravel(), rtol=0, atol=1e-5):
                    wrong.append("wrong logits")

    threads = [threading.Thread(target=client, args=(c,)) for c in calls]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if wrong:
        raise SystemExit(f"{len(wrong)} requests were lost or answered wrongly; first: {wrong[0]}")
    if not latencies:
        raise SystemExit(f"no request was answered; first error: {named[0] if named else 'none (time cap)'}")
    latencies.sort()
    return {"requests": len(latencies), "errors": len(named), "throughput": len(latencies) / wall,
            "p50": statistics.median(latencies), "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "wall": wall}  # fmt: skip


CALLERS = {"HTTP": http_caller, "gRPC": grpc_caller}


def stall(proc, stop: threading.Event) -> None:
    """SIGSTOP ``proc`` for STOP_MS out of every CYCLE_MS until ``stop`` is set; leave it running."""
    while not stop.is_set():
        proc.send_signal(signal.SIGSTOP)
        time.sleep(STOP_MS / 1e3)
        proc.send_signal(signal.SIGCONT)
        stop.wait((CYCLE_MS - STOP_MS) / 1e3)
    proc.send_signal(signal.SIGCONT)


def faulted(plan, root: Path, x: np.ndarray, expected: np.ndarray, args, fault: str, hedge: str | None,
            caller: Callable[..., Callable[[], Call]]) -> dict:  # fmt: skip
    """One row of the plan on fresh workers (every shard deployed again): ``fault`` is none, killed or slowed."""
    from edgekit.splitter.local import LocalWorkers

    run = root / f"run-{fault}-{hedge or 'off'}-{caller.__name__}"
    with LocalWorkers([d.name for d in plan.devices], run / "workers") as workers:
        spec = ",".join(f"{k}={v}" for k, v in workers.addresses.items())
        options = ["--workers", spec, "--timeout", "10", "--report", str(run / "report.json")]
        options += ["--hedge-after", hedge] if hedge else []
        victim = workers.workers[VICTIM].proc
        stop = threading.Event()
        staller = threading.Thread(target=stall, args=(victim, stop), daemon=True)

        def before(i: int) -> None:
            if fault == "killed" and i == args.requests // 3:
                victim.send_signal(signal.SIGKILL)
            if fault == "slowed" and i == 0:
                staller.start()

        with start_local_server(plan.root, *options) as server:
            try:
                result = load(caller(server, plan.input["name"], x), expected, args.clients, args.requests,
                              args.cap, before)  # fmt: skip
            finally:
                stop.set()
                if staller.is_alive():
                    staller.join()
        report = json.loads((run / "report.json").read_text())  # written when the server stopped
    return {**result, "retries": report["retries"], "hedges": f"{report['hedges']} ({report['hedge_wins']})"}


def fused_here(plan, x: np.ndarray) -> np.ndarray:
    """The plan's logits computed in this process: every shard's bundle on its runtime, the fusion head in numpy."""
    from edgekit.runtimes import load as load_runtime

    features = []
    for shard in plan.shards:
        with load_runtime(plan.verify_shard(shard)) as runtime:
            features.append(runtime.run(x)["features"])
    return plan.load_fusion().logits(features)


def build(root: Path, console: Console):
    from edgekit import export
    from edgekit.splitter.devices import DeviceSpec
    from edgekit.splitter.edvit import SplitSettings, plan_split

    with console.status("exporting vit_digits (depth 2) to ONNX", spinner="dots"):
        bundle = Path(export("vit_digits", format="onnx", out_dir=root / "bundle", config=CONFIG).bundle_dir)
    devices = [DeviceSpec(f"pi-{i}", None, 50_000_000, 5.0, "onnx") for i in range(3)]
    settings = SplitSettings(epochs=4, finetune_epochs=1, fusion_epochs=15, samples=4, replicas=2)
    with console.status("planning a split over 3 ONNX devices, 2 copies per shard", spinner="dots"):
        plan = plan_split("vit_digits", devices, root / "plan", config=CONFIG, settings=settings)
    return bundle, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=400, help="requests per row")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds a row may take at most")
    args = parser.parse_args()
    quiet_toolchain_logs()
    console = Console(width=120)
    from edgekit.runtimes import load as load_runtime

    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekit-serve-bench-") as tmp:
        root = Path(tmp)
        bundle, plan = build(root, console)
        with load_runtime(bundle) as runtime:
            expected_bundle = runtime.run(x)["logits"]
        expected_plan = fused_here(plan, x)
        name = plan.input["name"]
        with start_local_server(bundle, "--threads", "1") as server:
            for transport, caller in CALLERS.items():
                with console.status(f"bundle over {transport}", spinner="dots"):
                    result = load(caller(server, name, x), expected_bundle, args.clients, args.requests, args.cap)
                rows.append(("bundle, in-process (ONNX Runtime)", transport, result))
        stalled = f"{VICTIM} SIGSTOPped {STOP_MS} of every {CYCLE_MS} ms"
        scenarios = (("none", None, "HTTP", "no faults"), ("none", None, "gRPC", "no faults"),
                     ("killed", None, "gRPC", f"{VICTIM} SIGKILLed at 1/3"), ("slowed", None, "gRPC", stalled),
                     ("slowed", "auto", "gRPC", f"{stalled}, hedge auto"))  # fmt: skip
        for fault, hedge, transport, label in scenarios:
            with console.status(f"split plan over {transport}, {label}", spinner="dots"):
                result = faulted(plan, root, x, expected_plan, args, fault, hedge, CALLERS[transport])
            rows.append((f"split plan, {label}", transport, result))
    cpu = f"{host_cpu().name}, {os.cpu_count()} cores"
    table = Table(title=f"edgekit serve, {args.clients} concurrent clients, batch 1, loopback, plan on 3 workers x 2 "
                        f"copies per shard; CPU: {cpu} (server, workers and clients share it)")  # fmt: skip
    for col in ("served", "transport", "ok", "err", "req/s", "p50 ms", "p99 ms", "retries", "hedges (won)"):
        table.add_column(col, justify="left" if col in ("served", "transport") else "right")
    for served, transport, r in rows:
        counts = str(r["requests"]), str(r["errors"]), f"{r['throughput']:.0f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}"
        table.add_row(served, transport, *counts, str(r.get("retries", "-")), r.get("hedges", "-"))
    console.print(table)
    load1, load5, load15 = os.getloadavg()
    console.print(f"load average at the end: {load1:.1f} {load5:.1f} {load15:.1f} (1, 5, 15 min)")


if __name__ == "__main__":
    main()
