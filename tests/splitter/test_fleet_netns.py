"""The fleet across network namespaces: every worker on its own host address, so binding beyond loopback
needs authentication. mTLS end to end, every refusal through the CLI (one line, exit 2), token + TLS.

Needs root and iproute2 (`make test-netns`). Namespaces and addresses come from test_netns.namespaces.
"""

from __future__ import annotations

import subprocess

import pytest

from edgekit.data import load_dataset
from edgekit.fleet.auth import ClientAuth
from edgekit.splitter import SplitCoordinator
from edgekit.splitter.local import start_local_worker
from tests.helpers.netns import namespaces
from tests.helpers.workers import HeldUpload, shard_chunks, wait_for_staging
from tests.helpers.workers import local_predictions as _local_predictions
from tests.splitter.conftest import EDGEKIT

pytestmark = pytest.mark.netns

PORT = 50051


@pytest.fixture(scope="module")
def hosts():
    with namespaces(4) as made:
        yield made


@pytest.fixture(scope="module")
def mtls_workers(split_plan, fleet, hosts, tmp_path_factory):
    """A mutual-TLS worker per plan device, each in its own namespace, bound to that host's address."""
    root = tmp_path_factory.mktemp("netns-tls")
    workers = []
    try:
        for device, (ns, _, address) in zip((d.name for d in split_plan.devices), hosts, strict=False):
            workers.append(start_local_worker(device, root / device, "--tls", str(fleet[device]), host=address,
                                              port=PORT, prefix=("ip", "netns", "exec", ns)))  # fmt: skip
        yield {w.name: w for w in workers}
    finally:
        for w in workers:
            w.stop()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EDGEKIT, *args], capture_output=True, text=True, timeout=180)


def _one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_split_over_mutual_tls_across_hosts(split_plan, fleet, mtls_workers):
    split = load_dataset("digits", tuple(split_plan.input["shape"]))
    x, y = split.x_test[:20], split.y_test[:20]
    addresses = {n: w.address for n, w in mtls_workers.items()}
    assert all(a.startswith("10.231.") for a in addresses.values())
    auth = ClientAuth.from_options(str(fleet["coordinator"]), None)
    with SplitCoordinator(split_plan, addresses, timeout=60, auth=auth) as coordinator:
        coordinator.deploy()
        coordinator.timeout = 5.0
        evaluation = coordinator.evaluate(x, y)
    assert evaluation.accuracy == pytest.approx(float((_local_predictions(split_plan, x).argmax(-1) == y).mean()))
    spec = ",".join(f"{n}={a}" for n, a in addresses.items())
    proc = _cli("infer-split", str(split_plan.root), "--workers", spec, "--eval", "digits", "--limit", "5",
                "--tls", str(fleet["coordinator"]))  # fmt: skip
    assert proc.returncode == 0 and "split accuracy on digits" in proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "identity, reason",
    [
        ("ca-only", "requires a client certificate and this side presents none"),
        ("other", "not signed by this fleet's CA"),
        ("expired", "expired on"),
        (None, "requires TLS and this side connected in plaintext"),
    ],
)
def test_cli_refusals_across_hosts_are_one_line(split_plan, fleet, mtls_workers, identity, reason):
    spec = ",".join(f"{n}={w.address}" for n, w in mtls_workers.items())
    tls = ("--tls", str(fleet[identity])) if identity else ()
    proc = _cli("infer-split", str(split_plan.root), "--workers", spec, "--eval", "digits", *tls)
    _one_line_error(proc, f"error: worker dev0 ({mtls_workers['dev0'].address})", reason)


def test_token_over_tls_across_hosts(split_plan, fleet, hosts, mtls_workers, tmp_path):
    """Workers with a token and TLS (no client certificates) beside the mTLS ones, on another port."""
    workers = []
    try:
        for device, (ns, _, address) in zip((d.name for d in split_plan.devices), hosts, strict=False):
            # --no-announce: the mTLS workers of the same names already announce themselves on these hosts
            options = ("--tls", str(fleet[device]), "--token-file", str(fleet["token"]), "--no-announce")
            workers.append(start_local_worker(device, tmp_path / device, *options, host=address, port=PORT + 1,
                                              prefix=("ip", "netns", "exec", ns)))  # fmt: skip
        dev0 = workers[0].address
        spec = ",".join(f"{w.name}={w.address}" for w in workers)
        base = ("infer-split", str(split_plan.root), "--workers", spec, "--tls", str(fleet["ca-only"]))
        _one_line_error(_cli(*base, "--eval", "digits"), f"worker dev0 ({dev0}): refused the call", "requires a bearer")
        line = _one_line_error(_cli(*base, "--eval", "digits", "--token-file", str(fleet["wrong-token"])),
                               f"worker dev0 ({dev0})", "wrong bearer token")  # fmt: skip
        assert "another-token" not in line and "s3cret" not in line
        right = _cli(*base, "--eval", "digits", "--limit", "5", "--token-file", str(fleet["token"]))
        assert right.returncode == 0 and "split accuracy" in right.stdout, right.stderr
    finally:
        for w in workers:
            w.stop()


def test_non_loopback_bind_without_auth_is_refused(hosts, tmp_path):
    ns, _, address = hosts[3]
    proc = subprocess.run(["ip", "netns", "exec", ns, EDGEKIT, "worker", "--host", address, "--port", str(PORT),
                           "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=60)  # fmt: skip
    _one_line_error(proc, f"refusing to serve {address} without authentication")
    proc = subprocess.run(["ip", "netns", "exec", ns, EDGEKIT, "worker", "--host", address, "--port", str(PORT),
                           "--workdir", str(tmp_path), "--token-file", "/dev/null"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "token" in proc.stderr


def test_standard_health_client_across_hosts_sees_the_drain(split_plan, fleet, hosts, tmp_path):
    """SERVING, then NOT_SERVING on SIGTERM while an upload from another host is in flight; that upload ends, exit 0."""
    import signal
    import threading

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from edgekit.splitter.wire import proto

    pb, pb_grpc = proto()
    ns, _, address = hosts[3]
    shard = split_plan.shards[0]
    worker = start_local_worker(shard.device, tmp_path / "w", "--tls", str(fleet[shard.device]), "--grace", "20",
                                host=address, port=PORT + 3, prefix=("ip", "netns", "exec", ns))  # fmt: skip
    held = HeldUpload(shard_chunks(split_plan, shard))

    def status(channel) -> int:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status

    try:
        with ClientAuth.from_options(str(fleet["coordinator"]), None).channel(worker.address, shard.device, []) as ch:
            assert status(ch) == health_pb2.HealthCheckResponse.SERVING
            upload = pb_grpc.ShardWorkerStub(ch).Deploy.future(iter(held), timeout=60)
            assert held.started.wait(10)
            wait_for_staging(worker.workdir)
            worker.send(signal.SIGTERM)
            for _ in range(100):  # bounded: 10 s
                if status(ch) == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                threading.Event().wait(0.1)
            assert status(ch) == health_pb2.HealthCheckResponse.NOT_SERVING
            held.release.set()
            assert upload.result().shard.digest == shard.digest
        assert worker.proc.wait(timeout=30) == 0
    finally:
        held.release.set()
        worker.stop()


def test_profile_on_a_worker_on_another_host_with_its_meter(bundles, fleet, hosts, tmp_path):
    """`profile --on` across hosts: the samples come from the worker's process, the energy from its INA226."""
    import json

    chip = tmp_path / "hwmon" / "hwmon0"
    chip.mkdir(parents=True)
    (chip / "name").write_text("ina226\n")
    (chip / "power1_input").write_text("2500000\n")  # microwatts: a steady 2.5 W
    ns, _, address = hosts[3]
    meter = {"EDGEKIT_HWMON_ROOT": str(tmp_path / "hwmon")}
    worker = start_local_worker("dev0", tmp_path / "w", "--tls", str(fleet["dev0"]), host=address, port=PORT + 4,
                                prefix=("ip", "netns", "exec", ns), env=meter)  # fmt: skip
    try:
        out = tmp_path / "p.json"
        proc = _cli("profile", str(bundles.path("cnn_small", "onnx")), "--on", f"dev0={worker.address}", "--runs",
                    "30", "--energy", "hwmon", "--idle", "0", "--tls", str(fleet["coordinator"]),
                    "--json", str(out))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        data = json.loads(out.read_text())
        assert data["device"] == "dev0" and data["pid"] == worker.proc.pid and len(data["samples_ms"]) == 30
        assert data["energy"]["source"] == "hwmon" and data["energy"]["average_watts"] == 2.5
    finally:
        worker.stop()
