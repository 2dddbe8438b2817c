"""``edgekit export --verify-on DEVICE``: the export's own verification inputs run by a worker on the device.

The staged bundle (already verified here) is deployed like a shard, pinned by its manifest's digest; each input
set goes to the worker's Infer call and its outputs come back as raw tensors, to be judged against PyTorch by the
same rule as the host's run. What a Raspberry Pi's runtime computes is then in the manifest beside what this
machine's runtime computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.bundle import read_bundle
from edgekit.errors import WorkerError
from edgekit.fleet.auth import ClientAuth
from edgekit.splitter.coordinator import failure_reason
from edgekit.splitter.plan import bundle_digest
from edgekit.splitter.remote_profile import deploy_pinned
from edgekit.splitter.wire import decode, encode, proto


class DeviceRunner:
    """Runs a bundle's input sets on one worker; after a call, ``machine`` and ``worker_version`` say where."""

    def __init__(self, device: str, address: str, auth: ClientAuth | None = None, timeout: float = 10.0):
        self.device, self.address, self.auth, self.timeout = device, address, auth or ClientAuth(), timeout
        self.machine = self.worker_version = ""

    @property
    def label(self) -> str:
        return f"{self.device} ({self.address})"

    def __call__(self, bundle_dir: Path, input_sets: list[dict], graph: str | None = None) -> list[dict]:
        import grpc

        pb, pb_grpc = proto()
        bundle = read_bundle(bundle_dir)
        if graph is not None and graph != bundle.graph().name:
            raise WorkerError(self.label, f"a worker runs a bundle's first graph only, not {graph!r}")
        digest = bundle_digest(bundle_dir)
        shard = f"verify-{digest[:16]}"
        problem = self.auth.local_problem()
        if problem:
            raise WorkerError(self.label, f"cannot authenticate: {problem}")
        options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        step = "deploying the bundle"
        outputs: list[dict[str, np.ndarray]] = []
        try:
            with self.auth.channel(self.address, self.device, options) as channel:
                stub = pb_grpc.ShardWorkerStub(channel)
                health = deploy_pinned(stub, bundle.format, Path(bundle_dir), shard, digest, self.label, self.timeout)
                self.machine, self.worker_version = health.machine, health.edgekit_version
                step = "running the verification inputs"
                for sample in input_sets:
                    request = pb.InferRequest(shard=shard, inputs=[encode(k, v) for k, v in sample.items()])
                    reply = stub.Infer(request, timeout=self.timeout)
                    outputs.append({t.name: decode(t) for t in reply.outputs})
        except grpc.RpcError as exc:
            what, _ = failure_reason(exc, self.auth, self.address, self.device, self.timeout)
            raise WorkerError(self.label, f"{what} while {step}") from None
        return outputs
