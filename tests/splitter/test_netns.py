"""Split inference across Linux network namespaces: each worker on its own "host" with its own address.

Needs root and iproute2 (`make test-netns`; not in the default run). Every namespace, veth pair and
address here is created by the test and removed after it: 10.231.<i>.0/24 (point to point) and 10.233.0.0/24
(a bridge, for multicast), nothing else is touched.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.errors import WorkerError
from edgekit.splitter import SplitCoordinator
from edgekit.splitter.local import start_local_worker
from tests.splitter.test_workers import _local_predictions

pytestmark = pytest.mark.netns


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextmanager
def namespaces(count: int) -> Iterator[list[tuple[str, str, str]]]:
    """(namespace, host-side veth, worker address) per simulated host, each on its own /24."""
    tag = f"ek{os.getpid() % 100000}"
    made = []
    try:
        for i in range(count):
            ns, host_if, ns_if = f"{tag}-{i}", f"{tag}h{i}", f"{tag}n{i}"
            _ip("netns", "add", ns)
            made.append((ns, host_if))
            _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _ip("link", "set", ns_if, "netns", ns)
            _ip("addr", "add", f"10.231.{i}.1/24", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("netns", "exec", ns, "ip", "addr", "add", f"10.231.{i}.2/24", "dev", ns_if)
            _ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
            _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield [(ns, host_if, f"10.231.{i}.2") for i, (ns, host_if) in enumerate(made)]
    finally:
        for ns, host_if in made:
            subprocess.run(["ip", "link", "del", host_if], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@contextmanager
def bridged(count: int) -> Iterator[list[tuple[str, str]]]:
    """(namespace, address) per host, all on one bridge (10.233.0.0/24) so that multicast (mDNS) reaches them."""
    tag = f"eb{os.getpid() % 100000}"
    bridge = f"{tag}br"
    made = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("link", "set", bridge, "up")
        for i in range(count):
            ns, host_if, ns_if = f"{tag}-{i}", f"{tag}h{i}", f"{tag}n{i}"
            _ip("netns", "add", ns)
            made.append((ns, host_if))
            _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _ip("link", "set", host_if, "master", bridge)
            _ip("link", "set", host_if, "up")
            _ip("link", "set", ns_if, "netns", ns)
            _ip("netns", "exec", ns, "ip", "addr", "add", f"10.233.0.{i + 2}/24", "dev", ns_if)
            _ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
            _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield [(ns, f"10.233.0.{i + 2}") for i, (ns, _) in enumerate(made)]
    finally:
        for ns, host_if in made:
            subprocess.run(["ip", "link", "del", host_if], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def test_split_across_network_namespaces_and_a_cut_link(split_plan, tmp_path):
    split = load_dataset("digits", tuple(split_plan.input["shape"]))
    x, y = split.x_test[:30], split.y_test[:30]
    devices = [d.name for d in split_plan.devices]
    with namespaces(len(devices)) as hosts:
        workers = []
        try:
            for device, (ns, _, address) in zip(devices, hosts, strict=True):
                workers.append(
                    start_local_worker(  # --insecure: this test is about the network, test_fleet_netns about auth
                        device,
                        tmp_path / device,
                        "--insecure",
                        host=address,
                        port=50051,
                        prefix=("ip", "netns", "exec", ns),
                    )  # fmt: skip
                )
            addresses = {w.name: w.address for w in workers}
            assert all(a.startswith("10.231.") for a in addresses.values())
            with SplitCoordinator(split_plan, addresses, timeout=3.0) as coordinator:
                coordinator.deploy()
                evaluation = coordinator.evaluate(x, y)
                expected = float((_local_predictions(split_plan, x).argmax(-1) == y).mean())
                assert evaluation.accuracy == pytest.approx(expected)
                assert {r["worker"] for r in evaluation.per_worker()} == set(devices)
                # Cut the second host's link: a network failure, not a dead process.
                _ip("link", "set", hosts[1][1], "down")
                start = time.monotonic()
                with pytest.raises(WorkerError, match=rf"worker {devices[1]} \(10\.231\.1\.2:50051\)"):
                    coordinator.infer(x[:1])
                assert time.monotonic() - start < 3.0 + 1.0
            with SplitCoordinator(split_plan, addresses, timeout=2.0, degraded_ok=True) as coordinator:
                output = coordinator.infer(x[:1])
                assert output.degraded and output.missing == (split_plan.shards[1].name,)
                assert np.isfinite(output.logits).all()
        finally:
            for w in workers:
                w.stop()
