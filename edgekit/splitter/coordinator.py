"""The client side of a split: deploy shards to workers, fan an input out, fuse the features.

Every request to every worker runs in parallel under one deadline (``timeout`` seconds), so a request
ends within the timeout whatever the workers do. A worker that fails (unreachable, killed mid-request,
too slow) raises :class:`WorkerError` naming it -- or, with ``degraded_ok``, its shards are left out,
the fusion head answers from the others (a missing shard enters as its training mean) and the result is
marked degraded; a worker that failed is not asked again by the same coordinator.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import ConfigError, InputError, WorkerError
from edgekit.fleet.auth import ClientAuth
from edgekit.splitter.devices import AUTO
from edgekit.splitter.plan import ShardPlan, SplitPlan
from edgekit.splitter.wire import decode, encode, proto

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
ALL = "*"  # parse_workers("auto"): every device of the plan
DEPLOY_SECONDS = 60.0


@dataclass(frozen=True)
class ShardCall:
    shard: str
    worker: str
    compute_ms: float  # inside the worker's runtime
    round_trip_ms: float  # as seen by the coordinator
    bytes_sent: int
    bytes_received: int

    @property
    def overhead_ms(self) -> float:
        """Network, serialisation and gRPC time: the round trip minus the worker's compute."""
        return max(0.0, self.round_trip_ms - self.compute_ms)

    def to_row(self) -> dict[str, Any]:
        """The per-worker row ``SplitEvaluation.per_worker`` gives (here for a single call)."""
        return {
            "worker": self.worker, "shards": [self.shard], "calls": 1, "compute_ms": self.compute_ms,
            "round_trip_ms": self.round_trip_ms, "overhead_ms": self.overhead_ms, "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
        }  # fmt: skip


@dataclass(frozen=True)
class SplitOutput:
    logits: np.ndarray  # (B, C)
    prediction: np.ndarray  # (B,)
    degraded: bool
    missing: tuple[str, ...]  # shards left out
    calls: tuple[ShardCall, ...]
    latency_ms: float


@dataclass(frozen=True)
class SplitEvaluation:
    accuracy: float
    samples: int
    degraded_samples: int
    latency_ms: tuple[float, ...]
    calls: tuple[ShardCall, ...] = field(repr=False)

    def per_worker(self) -> list[dict[str, Any]]:
        rows = []
        for worker in sorted({c.worker for c in self.calls}):
            mine = [c for c in self.calls if c.worker == worker]
            rows.append(
                {
                    "worker": worker,
                    "shards": sorted({c.shard for c in mine}),
                    "calls": len(mine),
                    "compute_ms": statistics.median(c.compute_ms for c in mine),
                    "round_trip_ms": statistics.median(c.round_trip_ms for c in mine),
                    "overhead_ms": statistics.median(c.overhead_ms for c in mine),
                    "bytes_sent": statistics.median(c.bytes_sent for c in mine),
                    "bytes_received": statistics.median(c.bytes_received for c in mine),
                }
            )
        return rows


def parse_workers(text: str | None) -> dict[str, str]:
    """``name=host:port,name=host:port`` -> {name: address}."""
    workers: dict[str, str] = {}
    if (text or "").strip() == AUTO:
        return {ALL: AUTO}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, address = item.partition("=")
        if not sep or not name or (":" not in address and address != AUTO):
            raise ConfigError(f"--workers takes name=host:port,...; cannot read {item!r}")
        workers[name] = address
    return workers


class SplitCoordinator:
    def __init__(
        self,
        plan: SplitPlan,
        workers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        degraded_ok: bool = False,
        auth: ClientAuth | None = None,
        discovery_seconds: float = 3.0,
    ):
        pb, pb_grpc = proto()
        import grpc

        self._pb, self._grpc = pb, grpc
        if timeout <= 0:
            raise ConfigError(f"--timeout must be positive, got {timeout}")
        self.plan, self.timeout, self.degraded_ok = plan, timeout, degraded_ok
        self.fusion = plan.load_fusion()
        workers = dict(workers or {})
        if workers.get(ALL) == AUTO:
            workers = {d.name: AUTO for d in plan.devices}
        unknown = sorted(set(workers) - {d.name for d in plan.devices})
        if unknown:
            raise ConfigError(f"--workers names {unknown[0]!r}, which is not a device of the plan "
                              f"({', '.join(d.name for d in plan.devices)})")  # fmt: skip
        self.addresses: dict[str, str] = {}
        for device in dict.fromkeys(s.device for s in plan.shards):  # plan order, for stable messages
            address = workers.get(device) or plan.device(device).address
            if not address:
                raise ConfigError(f"no address for device {device}: pass --workers {device}=host:port")
            self.addresses[device] = address
        self.auth = auth or ClientAuth()
        auto = [d for d, a in self.addresses.items() if a == AUTO]
        if auto:
            from edgekit.fleet.discovery import resolve

            self.addresses.update(resolve(auto, self.auth.identity, timeout=discovery_seconds))
        problem = self.auth.local_problem()
        if problem:
            first = next(iter(self.addresses))
            raise WorkerError(f"{first} ({self.addresses[first]})", f"cannot authenticate: {problem}")
        options = [("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20)]
        self._channels = {d: self.auth.channel(a, d, options) for d, a in self.addresses.items()}
        self._stubs = {d: pb_grpc.ShardWorkerStub(c) for d, c in self._channels.items()}
        self.down: dict[str, str] = {}  # worker -> why it was dropped (degraded mode)

    # -- control plane -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Each worker's health reply, in parallel; a failure raises WorkerError (or is recorded when degraded)."""
        calls = {d: s.Health.future(self._pb.HealthRequest(), timeout=self.timeout) for d, s in self._stubs.items()}
        replies = {}
        for device, call in calls.items():
            try:
                replies[device] = call.result()
            except self._grpc.RpcError as exc:
                self._fail(device, exc)
        return replies

    def wait_ready(self, seconds: float = DEPLOY_SECONDS) -> dict[str, Any]:
        """Health replies once no worker is still loading its stored shards (polled, at most ``seconds``)."""
        deadline = time.monotonic() + seconds
        replies = self.health()
        while any(r.status == "loading" for r in replies.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
            replies = self.health()
        loading = sorted(d for d, r in replies.items() if r.status == "loading")
        if loading:
            raise WorkerError(self._label(loading[0]), f"still loading its stored shards after {seconds:g} s")
        return replies

    def deploy(self, force: bool = False, on_shard: Callable[[ShardPlan, int], None] | None = None) -> list[str]:
        """Upload every shard its worker lacks (or all with ``force``); returns the shards sent."""
        sent = []
        replies = self.wait_ready()
        for shard in self.plan.shards:
            if shard.device in self.down:
                continue
            reply = replies[shard.device]
            held = {s.shard: s.digest for s in reply.shards}
            if shard.format not in reply.formats:
                raise WorkerError(
                    self._label(shard.device),
                    f"cannot run {shard.format} bundles (it has runtimes for {', '.join(reply.formats) or 'nothing'}); "
                    f"install edgekit-sdk[{_extra(shard.format)}] there",
                )
            if held.get(shard.name) == shard.digest and not force:
                continue
            path = self.plan.verify_shard(shard)
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            # Loading can be slow the first time (the ExecuTorch runtime imports torch): the worker has
            # already answered a health check within the timeout, so a deploy gets a minute, plus a second a MiB.
            deadline = max(self.timeout, DEPLOY_SECONDS) + size / (1 << 20)
            try:
                self._stubs[shard.device].Deploy(self._chunks(shard, path), timeout=deadline)
            except self._grpc.RpcError as exc:
                self._fail(shard.device, exc, during=f"deploying {shard.name}")
                continue
            sent.append(shard.name)
            if on_shard:
                on_shard(shard, size)
        return sent

    def _chunks(self, shard: ShardPlan, path: Path) -> Iterator[Any]:
        return bundle_chunks(shard.name, shard.digest, path)

    # -- data plane ----------------------------------------------------------------------------

    def infer(self, x: np.ndarray) -> SplitOutput:
        """Fused logits for one input batch shaped like the plan's input."""
        x = self._check_input(x)
        tensor = encode(self.plan.input["name"], x)  # once: every shard receives the same bytes
        start = time.perf_counter()
        deadline = start + self.timeout
        pending = []
        for shard in self.plan.shards:
            if shard.device in self.down:
                continue
            request = self._pb.InferRequest(shard=shard.name, inputs=[tensor])
            stamp: dict[str, float] = {}  # when the reply arrived, set on gRPC's thread
            sent_at = time.perf_counter()
            future = self._stubs[shard.device].Infer.future(request, timeout=max(0.001, deadline - sent_at))
            future.add_done_callback(lambda _f, s=stamp: s.setdefault("t", time.perf_counter()))
            pending.append((shard, request, future, sent_at, stamp))
        features: dict[str, np.ndarray] = {}
        calls = []
        for shard, request, future, sent_at, stamp in pending:
            try:
                reply = future.result()
            except self._grpc.RpcError as exc:
                self._fail(shard.device, exc, during=f"running {shard.name}")
                continue
            output = decode(reply.outputs[0]) if reply.outputs else None
            if output is None or output.size != x.shape[0] * shard.feature_dim:
                got = None if output is None else list(output.shape)
                raise WorkerError(self._label(shard.device), f"{shard.name} returned features of shape {got}, "
                                  f"expected {[x.shape[0], shard.feature_dim]}")  # fmt: skip
            features[shard.name] = output.reshape(x.shape[0], shard.feature_dim)
            calls.append(
                ShardCall(
                    shard.name, shard.device, reply.compute_ms, (stamp.get("t", time.perf_counter()) - sent_at) * 1e3,
                    request.ByteSize(), reply.ByteSize(),
                )
            )  # fmt: skip
        missing = tuple(s.name for s in self.plan.shards if s.name not in features)
        if len(missing) == len(self.plan.shards):
            raise WorkerError(", ".join(sorted(self.down)) or "all", "no shard answered; nothing to fuse")
        logits = self.fusion.logits([features.get(s.name) for s in self.plan.shards])
        return SplitOutput(
            logits, logits.argmax(-1), bool(missing), missing, tuple(calls), (time.perf_counter() - start) * 1e3
        )

    def evaluate(
        self, x: np.ndarray, y: np.ndarray, on_sample: Callable[[int, SplitOutput], None] | None = None
    ) -> SplitEvaluation:
        """Accuracy over labelled samples sent one at a time (batch 1, as an edge camera would)."""
        correct = degraded = 0
        latency, calls = [], []
        for i in range(len(x)):
            result = self.infer(x[i : i + 1])
            correct += int(result.prediction[0] == y[i])
            degraded += int(result.degraded)
            latency.append(result.latency_ms)
            calls.extend(result.calls)
            if on_sample:
                on_sample(i, result)
        return SplitEvaluation(correct / max(1, len(x)), len(x), degraded, tuple(latency), tuple(calls))

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> SplitCoordinator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------------

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        expected = tuple(self.plan.input["shape"])
        x = np.asarray(x)
        if x.dtype != np.float32:
            raise InputError(f"split input must be float32, got {x.dtype}")
        if x.shape != expected:
            raise InputError(f"split input must have shape {list(expected)}, got {list(x.shape)}")
        return np.ascontiguousarray(x)

    def _label(self, device: str) -> str:
        return f"{device} ({self.addresses[device]})"

    def _fail(self, device: str, exc: Any, during: str = "") -> None:
        what, auth_failure = failure_reason(exc, self.auth, self.addresses[device], device, self.timeout)
        if auth_failure:
            raise WorkerError(self._label(device), what)  # degraded mode cannot help: every call would fail
        if during:
            what = f"{what} while {during}"
        if not self.degraded_ok:
            raise WorkerError(self._label(device), what)
        log.warning("worker %s %s; continuing without it (degraded)", self._label(device), what)
        self.down[device] = what


def failure_reason(exc: Any, auth: ClientAuth, address: str, device: str, timeout: float) -> tuple[str, bool]:
    """(what went wrong, in words; whether it is about authentication) for a failed gRPC call to a worker."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
    name = getattr(code, "name", "ERROR")
    refused = auth.explain(name, details, address, device)
    if refused:
        return refused, True
    if name == "DEADLINE_EXCEEDED":
        return f"did not answer within {timeout:g} s", False
    if name == "UNAVAILABLE":
        first = details.splitlines()[0][:160] if details else "connection failed"
        return f"is unreachable or stopped ({first})", False
    return f"refused the request ({name}: {details.splitlines()[0][:200] if details else 'no details'})", False


def bundle_chunks(shard: str, digest: str, path: Path) -> Iterator[Any]:
    """A bundle directory as the DeployChunk stream a worker receives (one empty chunk for an empty file)."""
    pb, _ = proto()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = str(file.relative_to(path))
        with file.open("rb") as fh:
            first = True
            while True:
                data = fh.read(CHUNK_BYTES)
                if not data and not first:
                    break
                yield pb.DeployChunk(shard=shard, digest=digest, path=rel, data=data)
                first = False
                if len(data) < CHUNK_BYTES:
                    break


def _extra(fmt: str) -> str:
    from edgekit.formats import get_format

    return get_format(fmt).runtime_extra
