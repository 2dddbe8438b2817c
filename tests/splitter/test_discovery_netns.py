"""Discovery over mDNS between hosts on one bridge: workers announce, `edgekit devices` and `--workers auto`
find them, and an announcement whose fingerprint is not the certificate the worker presents is refused.

Needs root and iproute2 (`make test-netns`). Every mDNS packet stays on the bridge the test makes; nothing is
sent from this machine's own namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from edgekit.fleet.ca import load_identity
from edgekit.splitter.local import start_local_worker
from tests.helpers.netns import bridged
from tests.splitter.conftest import EDGEKIT

pytestmark = pytest.mark.netns

PORT = 50071


@pytest.fixture(scope="module")
def lan(split_plan, fleet, tmp_path_factory):
    """Two hosts on a bridge; dev0 and dev1 on the first, dev2 on the second (all mTLS, announced)."""
    root = tmp_path_factory.mktemp("lan")
    workers = []
    with bridged(3) as hosts:
        try:
            for device, (ns, address), port in (("dev0", hosts[0], PORT), ("dev1", hosts[0], PORT + 1),
                                                ("dev2", hosts[1], PORT)):  # fmt: skip
                workers.append(start_local_worker(device, root / device, "--tls", str(fleet[device]), host=address,
                                                  port=port, prefix=("ip", "netns", "exec", ns)))  # fmt: skip
            yield hosts, {w.name: w for w in workers}
        finally:
            for w in workers:
                w.stop()


def _in(ns: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, EDGEKIT, *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_two_hosts_on_a_bridge_discover_each_others_workers(lan, fleet, tmp_path):
    hosts, workers = lan
    for ns, _ in hosts[:2]:
        out = tmp_path / f"{ns}.json"
        proc = _in(ns, "devices", "--timeout", "4", "--tls", str(fleet["coordinator"]), "--json", str(out))
        assert proc.returncode == 0, proc.stderr
        rows = {r["name"]: r for r in json.loads(out.read_text())}
        assert set(rows) == set(workers), (ns, rows)
        for name, w in workers.items():
            assert rows[name]["address"] == w.address and rows[name]["reachable"], rows[name]
            assert rows[name]["sha256"] == load_identity(fleet[name]).fingerprint
            assert rows[name]["auth"] == "mtls" and "onnx" in rows[name]["runtimes"]
            assert int(rows[name]["memory"]) > 0 and float(rows[name]["gflops"]) > 0
        assert "dev2" in proc.stdout and "GFLOP/s" in proc.stdout
        assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_workers_auto_resolves_the_plan_through_discovery(split_plan, lan, fleet):
    hosts, _ = lan
    proc = _in(hosts[2][0], "infer-split", str(split_plan.root), "--workers", "auto", "--tls",
               str(fleet["coordinator"]), "--eval", "digits", "--limit", "5", "--timeout", "30")  # fmt: skip
    assert proc.returncode == 0 and "split accuracy on digits" in proc.stdout, proc.stderr


def test_a_spoofed_fingerprint_is_refused(split_plan, lan, fleet, tmp_path):
    """A real dev-spoof worker that is not announced, and an announcement for it carrying another fingerprint."""
    from edgekit.fleet.ca import issue

    hosts, _ = lan
    (ns_a, address_a), (ns_c, address_c) = hosts[0], hosts[2]
    identity = issue(fleet["fleet"], "dev-spoof")
    worker = start_local_worker("dev-spoof", tmp_path / "w", "--tls", str(identity), "--no-announce",
                                host=address_a, port=PORT + 5, prefix=("ip", "netns", "exec", ns_a))  # fmt: skip
    wrong = load_identity(fleet["dev0"]).fingerprint
    script = (
        "import time\n"
        "from edgekit.fleet.discovery import Announcement, Announcer\n"
        f"a = Announcer(Announcement('dev-spoof', {address_a!r}, {PORT + 5}, 'x86_64', ('onnx',), 1, 1.0, "
        f"{wrong!r}, 'mtls'), interface={address_c!r})\n"
        "print('announced', flush=True)\n"
        "time.sleep(60)\n"
    )
    spoofer = subprocess.Popen(["ip", "netns", "exec", ns_c, sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert spoofer.stdout.readline().strip() == "announced", spoofer.stderr.read()
        out = tmp_path / "seen.json"
        proc = _in(hosts[1][0], "devices", "--timeout", "4", "--tls", str(fleet["coordinator"]), "--json", str(out))
        assert proc.returncode == 0, proc.stderr
        rows = {r["name"]: r for r in json.loads(out.read_text())}
        assert not rows["dev-spoof"]["reachable"] and "spoofed" in rows["dev-spoof"]["why"], rows["dev-spoof"]
        assert rows["dev0"]["reachable"]  # the honest ones still are
        start = time.monotonic()
        resolve = (
            "from edgekit.fleet.discovery import resolve\n"
            "from edgekit.fleet.ca import load_identity\n"
            f"resolve(['dev-spoof'], load_identity({str(fleet['coordinator'])!r}), timeout=4)\n"
        )
        check = subprocess.run(["ip", "netns", "exec", hosts[1][0], sys.executable, "-c", resolve],
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        assert check.returncode != 0 and "spoofed announcement" in check.stderr, check.stderr
        assert time.monotonic() - start < 60
    finally:
        spoofer.kill()
        spoofer.wait()
        worker.stop()


def test_a_second_worker_announcing_a_taken_name_refuses_to_start(lan, fleet, tmp_path):
    hosts, _ = lan
    ns, address = hosts[1]
    proc = _in(ns, "worker", "--host", address, "--port", str(PORT + 7), "--tls", str(fleet["dev0"]),
               "--workdir", str(tmp_path), timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "another worker already announces 'dev0'" in lines[0], proc.stderr
