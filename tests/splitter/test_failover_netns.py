"""The load test of issue #16: 8 concurrent clients, 2,000 requests, a plan of 3 workers (each in its own network
namespace) with every shard on 2 of them; one worker is SIGKILLed in the middle and another SIGSTOPped for a
while. Every request must get the right answer -- bit for bit what the plan answered before any fault, which is
also local fusion of the same bundles -- or, only while no holder of some shard is left, a named error before its
deadline; none lost, none answered twice.

Needs root and iproute2. Namespaces, veths and addresses are this test's own (10.241.<i>.0/24, port 51250).
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time

import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.errors import WorkerError
from edgekit.splitter import SplitCoordinator
from edgekit.splitter.local import start_local_worker
from edgekit.splitter.replicas import with_replicas
from tests.helpers.load import run_load
from tests.helpers.netns import namespaces
from tests.helpers.workers import local_predictions
from tests.splitter.conftest import FORMATS

pytestmark = pytest.mark.netns

PORT = 51250
TIMEOUT = 5.0  # each request's deadline
TOTAL, CLIENTS = 2000, 8
KILL_AT, STOP_AT = 600, 1000  # requests finished when the faults start
STOP_SECONDS = 6.0  # longer than a deadline: calls stuck on it time out


def test_load_with_a_worker_killed_and_another_stopped_loses_nothing(split_plan, tmp_path):
    devices = [dataclasses.replace(d, runtimes=FORMATS) for d in split_plan.devices]
    plan = with_replicas(split_plan, 2, devices)
    # Kill one holder of the first shard and stop the other: while it is stopped that shard has no live holder.
    STOPPED, KILLED = plan.shards[0].holders  # noqa: N806
    doomed = {s.name for s in plan.shards if set(s.holders) <= {KILLED, STOPPED}}
    assert doomed
    split = load_dataset("digits", tuple(plan.input["shape"]))
    images = split.x_test[:64]
    local = local_predictions(plan, images)
    started_at = time.monotonic()
    with namespaces(len(devices), subnet="10.241", tag="fo") as hosts:
        workers = {}
        try:
            for device, (ns, _, address) in zip([d.name for d in devices], hosts, strict=True):
                inside = ("ip", "netns", "exec", ns)
                workers[device] = start_local_worker(device, tmp_path / device, "--insecure", "--threads", "1",
                                                     host=address, port=PORT, prefix=inside)  # fmt: skip
            addresses = {d: w.address for d, w in workers.items()}
            assert all(a.startswith("10.241.") for a in addresses.values())
            # a generous deploy: two workers import torch at once for the ExecuTorch shard on a loaded machine
            with SplitCoordinator(plan, addresses, timeout=180, hedge_after="auto") as coordinator:
                coordinator.deploy()
                coordinator.timeout = TIMEOUT
                reference = [coordinator.infer(images[i : i + 1]).logits for i in range(len(images))]
                np.testing.assert_allclose(np.concatenate(reference), local, rtol=1e-5, atol=1e-5)
                faults: dict[str, float] = {}
                fired = threading.Event()

                def inject(done: int) -> None:  # on a client thread, once per finished request
                    if done == KILL_AT:
                        workers[KILLED].proc.send_signal(signal.SIGKILL)
                        faults["killed"] = time.monotonic()
                    elif done == STOP_AT:
                        workers[STOPPED].proc.send_signal(signal.SIGSTOP)
                        faults["stopped"] = time.monotonic()
                        threading.Timer(STOP_SECONDS, resume).start()

                def resume() -> None:
                    workers[STOPPED].proc.send_signal(signal.SIGCONT)
                    faults["resumed"] = time.monotonic()
                    fired.set()

                run = run_load(lambda _id, x: coordinator.infer(x).logits, images, CLIENTS, TOTAL, seconds=150,
                               on_progress=inject)  # fmt: skip
                assert fired.wait(10), "the stopped worker was never resumed"
                deadline = time.monotonic() + 20
                while STOPPED in coordinator.down and time.monotonic() < deadline:
                    time.sleep(0.1)
                rejoined = {r.worker: r for r in coordinator.workers.rejoins}
                rejoined_at = time.monotonic()
                down = coordinator.down
        finally:
            for w in workers.values():
                w.stop(signal.SIGKILL)
    # None lost, none duplicated.
    assert run.duplicates == []
    assert sorted(run.outcomes) == list(range(TOTAL))
    answered = [o for o in run.outcomes.values() if o.error is None]
    failed = [o for o in run.outcomes.values() if o.error is not None]
    # Every answer is the pre-fault answer for its image, bit for bit.
    wrong = [o.request_id for o in answered if not np.array_equal(o.logits, reference[o.image])]
    assert wrong == []
    # Every request ended before its deadline (plus scheduling slack on a loaded machine).
    late = [o.request_id for o in run.outcomes.values() if o.ended - o.started > TIMEOUT + 0.5]
    assert late == []
    # Errors are named, and only while a shard had no live holder: after the stop, before the stopped worker rejoined.
    assert {"killed", "stopped", "resumed"} <= set(faults)
    for o in failed:
        assert isinstance(o.error, WorkerError), repr(o.error)
        assert doomed and any(f"no replica of {s} is left" in str(o.error) for s in doomed), str(o.error)
        assert o.ended >= faults["stopped"] and o.started <= rejoined_at, (o, faults)
    assert len(answered) >= STOP_AT - CLIENTS  # at most the requests in flight at the stop can have failed before it
    # The killed worker stays down; the stopped one came back.
    assert KILLED in down and STOPPED not in down and STOPPED in rejoined
    assert time.monotonic() - started_at < 240
    print(
        f"\n{len(answered)} answered, {len(failed)} named errors (doomed {sorted(doomed)}), "
        f"{len(answered) / run.wall_s:.0f} answers/s over {run.wall_s:.1f} s; rejoined {sorted(rejoined)}"
    )
