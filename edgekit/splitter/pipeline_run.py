"""Running a layer-pipeline plan (``--strategy pipeline``): deploy its stages, send inputs down the chain.

The caller talks to the first stage only; each worker hands its output to the next (``relay.py``) and the last
stage's logits come back along the chain. A stream keeps up to ``in_flight`` inputs in the pipeline at once, so
stage k works on input i while stage k+1 works on input i-1. Needs numpy and grpcio, no torch. Failures are
``WorkerError``s that name the stage and device that failed (a stage further down the chain reports it through
the ones before), within the one deadline the request was given.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.errors import ConfigError, InputError, WorkerError
from edgekit.fleet.auth import ClientAuth
from edgekit.splitter.coordinator import DEPLOY_SECONDS, bundle_chunks
from edgekit.splitter.plan import SplitPlan
from edgekit.splitter.relay import FAILED_PREFIX
from edgekit.splitter.wire import decode, encode, proto

MAX_MESSAGE_BYTES = 16 << 20


@dataclass(frozen=True)
class StageCall:
    shard: str
    worker: str
    compute_ms: float
    bytes_in: int


@dataclass(frozen=True)
class PipelineOutput:
    logits: np.ndarray  # (B, C)
    prediction: np.ndarray
    stages: tuple[StageCall, ...]
    latency_ms: float
    bytes_total: int  # every request along the chain plus the reply back

    @property
    def compute_ms(self) -> float:
        return sum(s.compute_ms for s in self.stages)


@dataclass(frozen=True)
class StreamResult:
    outputs: tuple[PipelineOutput, ...]
    seconds: float
    in_flight: int

    @property
    def throughput_per_s(self) -> float:
        return len(self.outputs) / self.seconds

    @property
    def latency_ms(self) -> float:
        return statistics.median(o.latency_ms for o in self.outputs)


class PipelineRunner:
    def __init__(
        self,
        plan: SplitPlan,
        workers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        auth: ClientAuth | None = None,
    ):
        pb, pb_grpc = proto()
        import grpc

        if plan.strategy != "pipeline":
            raise ConfigError(f"this plan's strategy is {plan.strategy}, not pipeline; run it with SplitCoordinator")
        if timeout <= 0:
            raise ConfigError(f"--timeout must be positive, got {timeout}")
        self._pb, self._grpc = pb, grpc
        self.plan, self.timeout = plan, timeout
        workers = dict(workers or {})
        unknown = sorted(set(workers) - {d.name for d in plan.devices})
        if unknown:
            raise ConfigError(f"--workers names {unknown[0]!r}, which is not a device of the plan")
        self.addresses: dict[str, str] = {}
        for shard in plan.shards:
            address = workers.get(shard.device) or plan.device(shard.device).address
            if not address or address == "auto":
                raise ConfigError(f"no address for device {shard.device}: pass --workers {shard.device}=host:port")
            self.addresses[shard.device] = address
        self.auth = auth or ClientAuth()
        problem = self.auth.local_problem()
        if problem:
            raise WorkerError(self._label(plan.shards[0].device), f"cannot authenticate: {problem}")
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]  # fmt: skip
        self._channels = {d: self.auth.channel(a, d, options) for d, a in self.addresses.items()}
        self._stubs = {d: pb_grpc.ShardWorkerStub(c) for d, c in self._channels.items()}
        first, *rest = plan.shards
        self._first = first
        self._hops = [pb.Hop(shard=s.name, device=s.device, address=self.addresses[s.device]) for s in rest]

    def deploy(self, force: bool = False, on_shard: Callable[[str, int], None] | None = None) -> list[str]:
        """Upload every stage its worker lacks (or all with ``force``); the stages sent."""
        sent = []
        for shard in self.plan.shards:
            stub = self._stubs[shard.device]
            try:
                reply = stub.Health(self._pb.HealthRequest(), timeout=self.timeout)
                deadline = time.monotonic() + DEPLOY_SECONDS
                while reply.status == "loading" and time.monotonic() < deadline:
                    time.sleep(0.2)
                    reply = stub.Health(self._pb.HealthRequest(), timeout=self.timeout)
                if shard.format not in reply.formats:
                    raise WorkerError(self._label(shard.device), f"cannot run {shard.format} bundles")
                if not force and any(s.shard == shard.name and s.digest == shard.digest for s in reply.shards):
                    continue
                path = self.plan.verify_shard(shard)
                size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                stub.Deploy(bundle_chunks(shard.name, shard.digest, path), timeout=DEPLOY_SECONDS + size / (1 << 20))
            except self._grpc.RpcError as exc:
                raise self._error(exc, shard.device, f"while deploying {shard.name}") from None
            sent.append(shard.name)
            if on_shard:
                on_shard(shard.name, size)
        return sent

    def submit(self, x: np.ndarray) -> tuple[Any, float]:
        """Start one request down the pipeline; (the call's future, when it was sent)."""
        x = self._check_input(x)
        request = self._pb.RelayRequest(shard=self._first.name, inputs=[encode(self.plan.input["name"], x)],
                                        next=self._hops)  # fmt: skip
        sent = time.perf_counter()
        return self._stubs[self._first.device].Relay.future(request, timeout=self.timeout), sent

    def result(self, future: Any, sent: float) -> PipelineOutput:
        try:
            reply = future.result()
        except self._grpc.RpcError as exc:
            raise self._error(exc, self._first.device) from None
        latency = (time.perf_counter() - sent) * 1e3
        if len(reply.outputs) != 1:
            raise WorkerError(self._label(self.plan.shards[-1].device), f"the last stage gave {len(reply.outputs)} "
                              "outputs, expected the logits")  # fmt: skip
        logits = decode(reply.outputs[0])
        stages = tuple(StageCall(s.shard, s.worker, s.compute_ms, s.bytes_in) for s in reply.stages)
        total = sum(s.bytes_in for s in stages) + reply.ByteSize()
        return PipelineOutput(logits, logits.argmax(-1), stages, latency, total)

    def infer(self, x: np.ndarray) -> PipelineOutput:
        return self.result(*self.submit(x))

    def stream(self, xs: Sequence[np.ndarray], in_flight: int | None = None) -> StreamResult:
        """Every input through the pipeline with up to ``in_flight`` (default: one per stage) in it at once."""
        in_flight = in_flight or len(self.plan.shards)
        pending: deque = deque()
        outputs = []
        start = time.perf_counter()
        for x in xs:
            if len(pending) >= in_flight:
                outputs.append(self.result(*pending.popleft()))
            pending.append(self.submit(x))
        while pending:
            outputs.append(self.result(*pending.popleft()))
        return StreamResult(tuple(outputs), time.perf_counter() - start, in_flight)

    def evaluate(self, x: np.ndarray, y: np.ndarray, in_flight: int = 1) -> tuple[float, StreamResult]:
        """Accuracy over labelled samples (batch 1), and the stream that produced it."""
        result = self.stream([x[i : i + 1] for i in range(len(x))], in_flight)
        correct = sum(int(o.prediction[0] == label) for o, label in zip(result.outputs, y, strict=True))
        return correct / max(1, len(x)), result

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> PipelineRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        expected = tuple(self.plan.input["shape"])
        x = np.asarray(x)
        if x.dtype != np.float32 or x.shape != expected:
            raise InputError(f"pipeline input must be float32 of shape {list(expected)}, got {x.dtype} "
                             f"{list(x.shape)}")  # fmt: skip
        return np.ascontiguousarray(x)

    def _label(self, device: str) -> str:
        return f"{device} ({self.addresses[device]})"

    def _error(self, exc: Any, device: str, during: str = "") -> WorkerError:
        code, details = exc.code(), exc.details() or ""
        if code == self._grpc.StatusCode.ABORTED and details.startswith(FAILED_PREFIX):
            # a later stage failed; the message names it: "stage NAME on DEVICE (ADDRESS) what"
            rest = details[len(FAILED_PREFIX) :]
            shard, _, rest = rest.partition(" on ")
            where, _, what = rest.partition(") ")
            return WorkerError(f"{where})", f"stage {shard} {what}")
        from edgekit.splitter.coordinator import failure_reason

        what, _ = failure_reason(exc, self.auth, self.addresses[device], device, self.timeout)
        stage = next(s.name for s in self.plan.shards if s.device == device)
        return WorkerError(self._label(device), f"stage {stage} {what}{' ' + during if during else ''}")
