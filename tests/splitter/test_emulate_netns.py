"""The emulated fleet (``edgekit.splitter.emulate``): what a device's quota and link give, measured from inside.

Needs root, iproute2, tc and the cgroup v1 cpu / memory controllers (`make test-netns`). Everything lives on
10.242.1.0/24 under the tag ``eft`` and is removed after each test; a stale fleet is removed at start.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from edgekit.splitter.devices import EmulateSpec
from edgekit.splitter.emulate import CGROUP_ROOT, EmulatedFleet, leftovers

pytestmark = pytest.mark.netns

TAG, SUBNET = "eft", "10.242.1"
BUSY = """
import os, time
start = time.monotonic(); cpu0 = time.process_time()
while time.monotonic() - start < {seconds}:
    pass
print(time.process_time() - cpu0, time.monotonic() - start)
"""


def test_a_busy_loop_inside_gets_the_quota_share():
    with EmulatedFleet([("pi", EmulateSpec(0.3, 100, 256_000_000))], tag=TAG, subnet=SUBNET) as fleet:
        host = fleet.host("pi")
        out = host.run(sys.executable, "-c", BUSY.format(seconds=2.0), capture_output=True, text=True, check=True)
        cpu, wall = map(float, out.stdout.split())
        share = cpu / wall
        stat = host.cpu_stat()
        limit = int((CGROUP_ROOT / "memory" / host.cgroup / "memory.limit_in_bytes").read_text())
    # At most the quota (plus a period's rounding); at least half of it even on a machine loaded by others.
    assert 0.15 <= share <= 0.3 * 1.1, share
    assert stat["nr_throttled"] > 50  # the 10 ms period throttled it again and again, not once
    assert limit == 256_000_000 - 256_000_000 % 4096  # the kernel rounds down to pages


def test_a_transfer_through_the_link_gets_its_rate():
    mbps, payload = 20.0, 3_000_000  # 1.2 s at 20 Mbit/s: long enough that the bucket's burst is small
    with EmulatedFleet([("pi", EmulateSpec(1.0, mbps, 256_000_000))], tag=TAG, subnet=SUBNET) as fleet:
        host = fleet.host("pi")
        received = {}
        listener = socket.create_server((fleet.host_address, 0))
        port = listener.getsockname()[1]

        def receive():
            conn, _ = listener.accept()
            total, start = 0, None
            with conn:
                while chunk := conn.recv(1 << 16):
                    start = start or time.monotonic()
                    total += len(chunk)
            received.update(bytes=total, seconds=time.monotonic() - start)

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        send = (
            "import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])));"
            f" s.sendall(b'x' * {payload}); s.close()"
        )
        host.run(sys.executable, "-c", send, fleet.host_address, str(port), check=True, timeout=30)
        thread.join(timeout=30)
        listener.close()
        # and the other direction's shaping is in place
        qdisc = subprocess.run(["tc", "qdisc", "show", "dev", host.host_if], capture_output=True, text=True).stdout
    rate = received["bytes"] * 8 / received["seconds"] / 1e6
    assert received["bytes"] == payload
    assert 0.75 * mbps <= rate <= 1.15 * mbps, rate
    assert "tbf" in qdisc and "20Mbit" in qdisc


def test_teardown_leaves_nothing_and_a_crashed_fleet_is_cleaned_at_start():
    fleet = EmulatedFleet([("a", EmulateSpec(0.5, 50, 128_000_000)), ("b", EmulateSpec(0.5, 50, 128_000_000))],
                          tag=TAG, subnet=SUBNET)  # fmt: skip
    fleet.__enter__()
    # a process left running on a device, as a crashed benchmark would leave its worker
    sleeper = subprocess.Popen([*fleet.host("b").prefix(), "sleep", "300"])
    time.sleep(0.5)
    assert fleet.host("b").run("true").returncode == 0
    assert len(leftovers(TAG)) >= 6  # 2 namespaces, 4 veth ends + bridge, 4 groups; "crash": no close()
    with EmulatedFleet([("c", EmulateSpec(0.5, 50, 128_000_000))], tag=TAG, subnet=SUBNET) as again:
        assert [h.name for h in again.hosts] == ["c"]
        assert sleeper.wait(timeout=10) == -9  # killed by the stale fleet's removal
        assert not any("-1" in item for item in leftovers(TAG))
    assert leftovers(TAG) == []
