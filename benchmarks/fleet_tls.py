"""What mutual TLS (and a bearer token) cost on one infer round trip to a worker, against plaintext.

One worker process per mode serves the same ONNX bundle (vit_digits at depth 2, exported and verified here);
the client sends batch-1 Infer calls over warm channels, one call per mode in turn (the order rotating), and
times each round trip, so that load on this shared machine falls on every mode alike; the paired difference
is the median over turns of (this mode's call - the plaintext call of the same turn). Loopback by default; with
``--netns`` (root) every worker runs in its own network namespace behind a veth pair (10.232.<i>.0/24, made
and removed here), as a separate host would. Prints medians and p90 per mode and the difference to plaintext.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edgekit._native import quiet_toolchain_logs
from edgekit.fleet.auth import ClientAuth
from edgekit.fleet.ca import init_fleet, issue
from edgekit.splitter.local import start_local_worker
from edgekit.splitter.plan import bundle_digest
from edgekit.splitter.wire import encode, proto

MODES = {  # name -> (worker options, client identity, client token)
    "plaintext": (("--insecure",), None, False),  # --insecure: allowed beyond loopback for this comparison
    "token": (("--token-file", "{token}"), None, True),  # loopback only: a worker refuses a clear token beyond
    "mtls": (("--tls", "{device}"), "coordinator", False),
    "tls+token": (("--tls", "{device}", "--token-file", "{token}"), "ca-only", True),
}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def namespace(index: int):
    """A namespace with a veth pair to this one; yields (prefix command, worker address)."""
    ns, host_if, ns_if = f"ekb{os.getpid() % 10000}-{index}", f"ekb{index}h{os.getpid() % 1000}", f"ekb{index}n"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"10.232.{index}.1/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for cmd in (("addr", "add", f"10.232.{index}.2/24", "dev", ns_if), ("link", "set", ns_if, "up"),
                    ("link", "set", "lo", "up")):  # fmt: skip
            _ip("netns", "exec", ns, "ip", *cmd)
        yield ("ip", "netns", "exec", ns), f"10.232.{index}.2"
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="round trips per mode and round (rounds x runs in all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--netns", action="store_true", help="workers in network namespaces (root)")
    args = parser.parse_args()
    quiet_toolchain_logs()
    console = Console(width=120)
    pb, pb_grpc = proto()
    with tempfile.TemporaryDirectory(prefix="edgekit-tls-bench-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        from edgekit import export

        bundle = export("vit_digits", format="onnx", out_dir=root / "bundle", config={"depth": 2}).bundle_dir
        fleet = init_fleet(root / "fleet")
        token = root / "token"
        token.write_text("benchmark-token-0123456789abcdef\n")
        ca_only = root / "ca-only"
        ca_only.mkdir()
        (ca_only / "ca.pem").write_bytes((fleet / "ca.pem").read_bytes())
        identities = {"coordinator": fleet / "identities" / "coordinator", "ca-only": ca_only}
        digest = bundle_digest(bundle)
        chunks = [pb.DeployChunk(shard="s", digest=digest, path=p.name, data=p.read_bytes())
                  for p in sorted(Path(bundle).iterdir())]  # fmt: skip
        request = pb.InferRequest(shard="s", inputs=[encode("image", np.zeros((1, 1, 8, 8), np.float32))])
        stubs = {}
        modes = {m: v for m, v in MODES.items() if not (args.netns and m == "token")}
        for i, (mode, (options, identity, with_token)) in enumerate(modes.items()):
            device = f"bench-{i}"
            device_dir = issue(fleet, device)
            prefix, host = stack.enter_context(namespace(i)) if args.netns else ((), "127.0.0.1")
            extra = [o.format(token=token, device=device_dir) for o in options]
            worker = start_local_worker(device, root / device, *extra, "--threads", "1", host=host,
                                        port=50061 if args.netns else 0, prefix=prefix)  # fmt: skip
            stack.callback(worker.stop)
            auth = ClientAuth.from_options(str(identities[identity]) if identity else None,
                                           str(token) if with_token else None)  # fmt: skip
            channel = stack.enter_context(auth.channel(worker.address, device, []))
            stubs[mode] = pb_grpc.ShardWorkerStub(channel)
            stubs[mode].Deploy(iter(chunks), timeout=120)
        for stub in stubs.values():
            for _ in range(20):  # warm every channel and runtime
                stub.Infer(request, timeout=10)
        # One call per mode in turn, the order rotating: a burst of load from elsewhere on this shared machine
        # lands on every mode alike, and each mode's call is paired with a plaintext call made moments apart.
        times: dict[str, list[float]] = {m: [] for m in modes}
        modes = list(stubs)
        for i in range(args.rounds * args.runs):
            for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:
                start = time.perf_counter()
                stubs[mode].Infer(request, timeout=10)
                times[mode].append((time.perf_counter() - start) * 1e3)
    base = statistics.median(times["plaintext"])
    where = "network namespaces (veth)" if args.netns else "loopback"
    table = Table(title=f"infer round trip, batch 1, {where}: {args.rounds} x {args.runs} calls per mode")
    for col in ("mode", "median ms", "p90 ms", "vs plaintext (median)", "paired difference (median)"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for mode, samples in times.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        paired = statistics.median(a - b for a, b in zip(samples, times["plaintext"], strict=True))
        table.add_row(mode, f"{median:.3f}", f"{p90:.3f}", f"{median - base:+.3f} ms ({median / base - 1:+.1%})",
                      f"{paired:+.3f} ms")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
