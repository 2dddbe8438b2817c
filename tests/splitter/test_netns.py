"""Split inference across Linux network namespaces: each worker on its own "host" with its own address.

Needs root and iproute2 (`make test-netns`; not in the default run). Every namespace, veth pair and
address here is created by the test and removed after it: 10.231.<i>.0/24 (point to point) and 10.233.0.0/24
(a bridge, for multicast), nothing else is touched.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.errors import WorkerError
from edgekit.splitter import SplitCoordinator
from edgekit.splitter.local import start_local_worker
from tests.helpers.netns import ip, namespaces
from tests.helpers.workers import local_predictions as _local_predictions

pytestmark = pytest.mark.netns


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
                ip("link", "set", hosts[1][1], "down")
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
