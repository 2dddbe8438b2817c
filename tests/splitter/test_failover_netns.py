"""The load test of issue #16: 8 concurrent clients, 2,000 requests, a plan of 3 workers (each in its own network
namespace) with every shard on 2 of them; one worker is SIGKILLed in the middle and another SIGSTOPped for a
while. Every request must get the right answer -- bit for bit what the plan answered before any fault, which is
also local fusion of the same bundles -- or, only while no holder of some shard is left, a named error before its
deadline; none lost, none answered twice. The clients call the coordinator's API, and, in the second run, an
`edgekit serve PLANDIR` process over the Open Inference Protocol's gRPC (the plan's endpoint as an app sees it).

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


class ServeClient:
    """`edgekit serve PLANDIR` on this namespace's loopback, called over gRPC (inference.GRPCInferenceService)."""

    def __init__(self, plan, addresses: dict[str, str], root):
        import shutil

        import grpc

        from edgekit.serving.grpc_codec import proto
        from edgekit.serving.local import start_local_server
        from edgekit.splitter.plan import save_plan

        shutil.copytree(plan.root, root)
        save_plan(plan, root)  # the replicated plan.json beside the same shard bundles
        spec = ",".join(f"{d}={a}" for d, a in addresses.items())
        self.server = start_local_server(root, "--no-http", "--workers", spec, "--timeout", str(TIMEOUT),
                                         "--hedge-after", "auto", ready_seconds=240)  # fmt: skip
        self.pb, pb_grpc = proto()
        self.channel = grpc.insecure_channel(self.server.grpc_address)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.input = plan.input["name"]

    def __call__(self, _request_id: int, x: np.ndarray) -> np.ndarray:
        request = self.pb.ModelInferRequest(model_name=self.server.model)
        request.inputs.add(name=self.input, datatype="FP32", shape=list(x.shape))
        request.raw_input_contents.append(np.ascontiguousarray(x, np.float32).tobytes())
        reply = self.stub.ModelInfer(request, timeout=TIMEOUT + 5)
        index = [o.name for o in reply.outputs].index("logits")
        shape = tuple(reply.outputs[index].shape)
        return np.frombuffer(reply.raw_output_contents[index], "<f4").reshape(shape)

    def close(self) -> None:
        self.channel.close()
        self.server.stop()


@pytest.mark.parametrize("via", ["api", "serve"])
def test_load_with_a_worker_killed_and_another_stopped_loses_nothing(split_plan, tmp_path, via):
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

                client = ServeClient(plan, addresses, tmp_path / "plan") if via == "serve" else None
                try:
                    if client is not None:  # the endpoint answers as the coordinator did, bit for bit
                        served = [client(i, images[i : i + 1]) for i in range(len(images))]
                        assert all(np.array_equal(a, b) for a, b in zip(served, reference, strict=True))
                    send = client or (lambda _id, x: coordinator.infer(x).logits)
                    run = run_load(send, images, CLIENTS, TOTAL, seconds=150, on_progress=inject)
                    assert fired.wait(10), "the stopped worker was never resumed"
                    deadline = time.monotonic() + 20
                    if client is None:
                        while STOPPED in coordinator.down and time.monotonic() < deadline:
                            time.sleep(0.1)
                        rejoined = {r.worker: r for r in coordinator.workers.rejoins}
                        down = coordinator.down
                    else:  # the server's coordinator is not ours to ask: a doomed shard answering again is the rejoin
                        rejoined, down = {}, {}
                        while time.monotonic() < deadline:
                            try:
                                client(-1, images[:1])
                                rejoined[STOPPED] = True
                                break
                            except Exception:  # noqa: BLE001 -- not back yet
                                time.sleep(0.2)
                    rejoined_at = time.monotonic()
                finally:
                    if client is not None:
                        client.close()
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
    slack = 0.5 if via == "api" else 1.5  # the server's own hop and its gRPC reply
    late = [o.request_id for o in run.outcomes.values() if o.ended - o.started > TIMEOUT + slack]
    assert late == []
    # Errors are named, and only while a shard had no live holder: after the stop, before the stopped worker rejoined.
    assert {"killed", "stopped", "resumed"} <= set(faults)
    for o in failed:
        if via == "api":
            assert isinstance(o.error, WorkerError), repr(o.error)
            why = str(o.error)
        else:  # the protocol's status for a plan whose worker failed, with the coordinator's reason
            assert o.error.code().name == "UNAVAILABLE", repr(o.error)
            why = o.error.details()
        assert doomed and any(f"no replica of {s} is left" in why for s in doomed), why
        assert o.ended >= faults["stopped"] and o.started <= rejoined_at, (o, faults)
    assert len(answered) >= STOP_AT - CLIENTS  # at most the requests in flight at the stop can have failed before it
    # The killed worker stays down; the stopped one came back.
    if via == "api":
        assert KILLED in down and STOPPED not in down
    assert STOPPED in rejoined
    assert time.monotonic() - started_at < 240
    print(
        f"\n{len(answered)} answered, {len(failed)} named errors (doomed {sorted(doomed)}), "
        f"{len(answered) / run.wall_s:.0f} answers/s over {run.wall_s:.1f} s; rejoined {sorted(rejoined)}"
    )
