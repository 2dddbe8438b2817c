"""The client side of a split: deploy shards to workers, fan an input out, fuse the features.

A request runs under one deadline (``timeout`` seconds, or ``deadline_s`` per call): every shard is sent at
once to its first live holder (``dispatch.py``), retried on a replica when that worker fails, times out or
answers wrongly, and hedged on a replica when it is slow (``hedge_after``). A worker that failed is marked
down and probed in the background (``workerset.py``); it rejoins once it answers the standard health check
and holds its shards. A shard none of whose holders answered raises :class:`WorkerError` naming the worker
-- or, with ``degraded_ok``, is left out, the fusion head answers from the others (a missing shard enters as
its training mean) and the result is marked degraded. ``infer`` may be called from many threads at once.
Every request leaves a :class:`RequestRecord`; ``evaluate`` gathers them into a ``RunReport``.
"""

from __future__ import annotations

import itertools
import logging
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.errors import ConfigError, InputError, WorkerError
from edgekit.fleet.auth import ClientAuth
from edgekit.profiling.energy.totalizer import EnergyTotal
from edgekit.splitter.deploy import DEPLOY_SECONDS, DeployOutcome, bundle_chunks, deploy_parallel
from edgekit.splitter.devices import AUTO
from edgekit.splitter.dispatch import Dispatcher
from edgekit.splitter.hedging import HedgePolicy, ShardLatencies
from edgekit.splitter.node_energy import between, read_totals
from edgekit.splitter.plan import ShardPlan, SplitPlan
from edgekit.splitter.records import RequestRecord, ShardCall
from edgekit.splitter.runreport import RunReport, build_report
from edgekit.splitter.wire import encode, proto
from edgekit.splitter.workerset import WorkerSet

__all__ = ["DEPLOY_SECONDS", "ShardCall", "SplitCoordinator", "SplitEvaluation", "SplitOutput", "bundle_chunks",
           "failure_reason", "parse_workers"]  # fmt: skip

log = logging.getLogger(__name__)

ALL = "*"  # parse_workers("auto"): every device of the plan


@dataclass(frozen=True)
class SplitOutput:
    logits: np.ndarray  # (B, C)
    prediction: np.ndarray  # (B,)
    degraded: bool
    missing: tuple[str, ...]  # shards left out
    calls: tuple[ShardCall, ...]
    latency_ms: float
    record: RequestRecord | None = None  # which worker served what, retries, hedges


@dataclass(frozen=True)
class SplitEvaluation:
    accuracy: float
    samples: int
    degraded_samples: int
    latency_ms: tuple[float, ...]
    calls: tuple[ShardCall, ...] = field(repr=False)
    report: RunReport | None = field(default=None, repr=False)

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
        hedge_after: str | float | HedgePolicy | None = None,
        probe_timeout: float = 1.0,
        on_record: Callable[[RequestRecord], None] | None = None,
    ):
        proto()  # a missing grpcio is named here, before anything else
        if timeout <= 0:
            raise ConfigError(f"--timeout must be positive, got {timeout}")
        self.plan, self.timeout, self.degraded_ok = plan, timeout, degraded_ok
        self.hedge = HedgePolicy.parse(hedge_after)
        self.on_record = on_record
        self.fusion = plan.load_fusion()
        workers = dict(workers or {})
        if workers.get(ALL) == AUTO:
            workers = {d.name: AUTO for d in plan.devices}
        unknown = sorted(set(workers) - {d.name for d in plan.devices})
        if unknown:
            raise ConfigError(f"--workers names {unknown[0]!r}, which is not a device of the plan "
                              f"({', '.join(d.name for d in plan.devices)})")  # fmt: skip
        addresses: dict[str, str] = {}
        for device in dict.fromkeys(d for s in plan.shards for d in s.holders):  # plan order, for stable messages
            address = workers.get(device) or plan.device(device).address
            if not address:
                raise ConfigError(f"no address for device {device}: pass --workers {device}=host:port")
            addresses[device] = address
        self.auth = auth or ClientAuth()
        auto = [d for d, a in addresses.items() if a == AUTO]
        if auto:
            from edgekit.fleet.discovery import resolve

            addresses.update(resolve(auto, self.auth.identity, timeout=discovery_seconds))
        problem = self.auth.local_problem()
        if problem:
            first = next(iter(addresses))
            raise WorkerError(f"{first} ({addresses[first]})", f"cannot authenticate: {problem}")
        self.workers = WorkerSet(addresses, self.auth, probe_timeout, on_rejoin=self._holds_its_shards)
        self.latencies = ShardLatencies()
        self._excluded: dict[tuple[str, str], str] = {}  # (shard, worker) -> why that worker cannot run it
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self.last_deploy: DeployOutcome | None = None
        self._dispatch = Dispatcher(self.workers, self._usable, self._explain, self.hedge, self.latencies)

    @property
    def addresses(self) -> dict[str, str]:
        return self.workers.addresses

    @property
    def down(self) -> dict[str, str]:
        """Workers down now -> why (they are probed and rejoin when healthy)."""
        return self.workers.down

    # -- control plane -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Each live worker's health reply, in parallel. A worker that fails is marked down; WorkerError when that
        leaves a shard without a holder (unless degraded)."""
        pb = proto()[0]
        calls = {d: s.Health.future(pb.HealthRequest(), timeout=self.timeout) for d, s in self.workers.stubs.items()}
        replies = {}
        for device, call in calls.items():
            try:
                replies[device] = call.result()
            except Exception as exc:  # noqa: BLE001 -- grpc.RpcError; explained, never raw
                self._fail(device, exc)
        self._check_coverage()
        return replies

    def energy_totals(self) -> dict[str, EnergyTotal]:
        """Each worker's running energy total (or why it has none), in parallel: read one at a run's start and one
        at its end, and ``node_energy.between`` gives each node's joules over the run."""
        return read_totals(self.workers.stubs, self.timeout)

    def wait_ready(self, seconds: float = DEPLOY_SECONDS) -> dict[str, Any]:
        """Health replies once no worker is still loading its stored shards (polled, at most ``seconds``)."""
        deadline = time.monotonic() + seconds
        replies = self.health()
        while any(r.status == "loading" for r in replies.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
            replies = self.health()
        loading = sorted(d for d, r in replies.items() if r.status == "loading")
        if loading:
            raise WorkerError(self.workers.label(loading[0]), f"still loading its stored shards after {seconds:g} s")
        return replies

    def deploy(self, force: bool = False, on_shard: Callable[[ShardPlan, int], None] | None = None) -> list[str]:
        """Upload every shard each of its holders lacks (or all with ``force``), every worker at once, under one
        deadline; returns the shards sent (a shard once per worker it went to)."""
        replies = self.wait_ready()
        todo: dict[str, list[ShardPlan]] = {}
        for shard in self.plan.shards:
            for device in shard.holders:
                reply = replies.get(device)
                if reply is None:
                    continue  # down: failed its health check
                if shard.format not in reply.formats:
                    self._cannot_run(shard, device, reply)
                    continue
                held = {s.shard: s.digest for s in reply.shards}
                if force or held.get(shard.name) != shard.digest:
                    todo.setdefault(device, []).append(shard)
        outcome = deploy_parallel(self.plan, self.workers, todo, self.timeout, on_shard)
        self.last_deploy = outcome
        for device, (exc, shard_name) in outcome.failed.items():
            self._fail(device, exc, during=f"deploying {shard_name}")
        self._check_coverage()
        order = {s.name: i for i, s in enumerate(self.plan.shards)}
        return [u.shard for u in sorted(outcome.uploads, key=lambda u: order[u.shard])]

    # -- data plane ----------------------------------------------------------------------------

    def infer(self, x: np.ndarray, deadline_s: float | None = None) -> SplitOutput:
        """Fused logits for one input batch shaped like the plan's input (thread-safe)."""
        x = self._check_input(x)
        budget = self.timeout if deadline_s is None else deadline_s
        if budget <= 0:
            raise ConfigError(f"a request's deadline must be positive, got {budget}")
        tensor = encode(self.plan.input["name"], x)  # once: every shard receives the same bytes
        request_id = next(self._ids)
        start = time.perf_counter()
        fan = self._dispatch.run(self.plan.shards, tensor, x.shape[0], start + budget)
        missing = tuple(s.name for s in self.plan.shards if s.name not in fan.features)
        error = ""
        if missing and (not self.degraded_ok or len(missing) == len(self.plan.shards)):
            error = self._no_holder_error(missing[0], fan.failures[missing[0]], len(missing) == len(self.plan.shards))
        if error:
            self._record(RequestRecord(request_id, start, (time.perf_counter() - start) * 1e3, fan.calls,
                                       fan.attempts, missing, str(error)))  # fmt: skip
            raise error
        logits = self.fusion.logits([fan.features.get(s.name) for s in self.plan.shards])
        latency = (time.perf_counter() - start) * 1e3
        calls = tuple(sorted(fan.calls, key=lambda c: [s.name for s in self.plan.shards].index(c.shard)))
        record = RequestRecord(request_id, start, latency, calls, fan.attempts, missing,
                               prediction=int(logits[0].argmax()))  # fmt: skip
        self._record(record)
        return SplitOutput(logits, logits.argmax(-1), bool(missing), missing, calls, latency, record)

    def evaluate(
        self, x: np.ndarray, y: np.ndarray, on_sample: Callable[[int, SplitOutput], None] | None = None
    ) -> SplitEvaluation:
        """Accuracy over labelled samples sent one at a time (batch 1, as an edge camera would)."""
        correct = degraded = 0
        latency, calls, records = [], [], []
        totals = self.energy_totals()
        start = time.perf_counter()
        for i in range(len(x)):
            result = self.infer(x[i : i + 1])
            correct += int(result.prediction[0] == y[i])
            degraded += int(result.degraded)
            latency.append(result.latency_ms)
            calls.extend(result.calls)
            records.append(result.record)
            if on_sample:
                on_sample(i, result)
        wall = time.perf_counter() - start
        energy = between(totals, self.energy_totals())
        report = build_report(records, wall, labels=y[: len(records)], workers=self.addresses, hedge=self.hedge,
                              rejoins=len(self.workers.rejoins), energy=energy)  # fmt: skip
        return SplitEvaluation(correct / max(1, len(x)), len(x), degraded, tuple(latency), tuple(calls), report)

    def close(self) -> None:
        self.workers.close()

    def __enter__(self) -> SplitCoordinator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        if self.on_record:
            self.on_record(record)

    def _holds_its_shards(self, device: str) -> bool:
        """Before a worker that answers the health check rejoins: it holds (or is given) every shard it should.

        Runs on the probe thread; the redeploy, if any, has its own deadline (``deploy.py``)."""
        pb = proto()[0]
        reply = self.workers.stubs[device].Health(pb.HealthRequest(), timeout=self.workers.probe_timeout)
        if reply.status != "ok":
            return False
        held = {s.shard: s.digest for s in reply.shards}
        with self._lock:
            mine = [s for s in self.plan.shards if device in s.holders and (s.name, device) not in self._excluded]
        missing = [s for s in mine if held.get(s.name) != s.digest]
        if missing:
            outcome = deploy_parallel(self.plan, self.workers, {device: missing}, self.timeout)
            if outcome.failed:
                exc, shard = outcome.failed[device]
                log.info("worker %s: redeploying %s failed: %s", self.workers.label(device), shard, exc)
                return False
            log.info("worker %s came back without %s; redeployed", self.workers.label(device),
                     ", ".join(s.name for s in missing))  # fmt: skip
        return True

    def _usable(self, shard: ShardPlan) -> list[str]:
        with self._lock:
            excluded = {d for (s, d) in self._excluded if s == shard.name}
        return [d for d in shard.holders if d not in excluded and self.workers.is_up(d)]

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        expected = tuple(self.plan.input["shape"])
        x = np.asarray(x)
        if x.dtype != np.float32:
            raise InputError(f"split input must be float32, got {x.dtype}")
        if x.shape != expected:
            raise InputError(f"split input must have shape {list(expected)}, got {list(x.shape)}")
        return np.ascontiguousarray(x)

    def _explain(self, device: str, exc: Any, budget_s: float) -> str:
        """A failed call in words; an authentication failure raises (no replica or retry can fix it)."""
        what, auth_failure = failure_reason(exc, self.auth, self.addresses[device], device, budget_s)
        if auth_failure:
            raise WorkerError(self.workers.label(device), what)
        return what

    def _fail(self, device: str, exc: Any, during: str = "") -> None:
        what = self._explain(device, exc, self.timeout)
        self.workers.mark_down(device, f"{what} while {during}" if during else what)

    def _cannot_run(self, shard: ShardPlan, device: str, reply: Any) -> None:
        why = (f"cannot run {shard.format} bundles (it has runtimes for {', '.join(reply.formats) or 'nothing'}); "
               f"install edgekit-sdk[{_extra(shard.format)}] there")  # fmt: skip
        with self._lock:
            self._excluded[(shard.name, device)] = why
            left = [d for d in shard.holders if (shard.name, d) not in self._excluded]
        if not left:  # a configuration error, not a failure: degraded mode would hide it on every request
            raise WorkerError(self.workers.label(device), why)
        log.warning("worker %s %s; %s runs on %s only", self.workers.label(device), why, shard.name, ", ".join(left))

    def _check_coverage(self) -> None:
        if self.degraded_ok:
            return
        for shard in self.plan.shards:
            if not self._usable(shard):
                worker = next((d for d in shard.holders if not self.workers.is_up(d)), shard.holders[0])
                raise self._no_holder_error(shard.name, (worker, self.workers.why_down(worker)), False)

    def _no_holder_error(self, shard_name: str, failure: tuple[str, str], everything: bool) -> WorkerError:
        worker, what = failure
        shard = next(s for s in self.plan.shards if s.name == shard_name)
        if everything and len(self.plan.shards) > 1 and self.degraded_ok:
            what = f"{what}; no shard answered, nothing to fuse"
        elif len(shard.holders) > 1:
            others = "; ".join(f"{d} {self.workers.why_down(d) or 'failed'}" for d in shard.holders if d != worker)
            what = f"{what}; no replica of {shard_name} is left ({others})"
        return WorkerError(self.workers.label(worker), what)


def failure_reason(exc: Any, auth: ClientAuth, address: str, device: str, timeout: float) -> tuple[str, bool]:
    """(what went wrong, in words; whether it is about authentication) for a failed gRPC call to a worker."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
    name = getattr(code, "name", "ERROR")
    refused = auth.explain(name, details, address, device)
    if refused:
        return refused, True
    if name == "DEADLINE_EXCEEDED":
        return f"did not answer within {timeout:.3g} s", False
    if name == "UNAVAILABLE":
        first = details.splitlines()[0][:160] if details else "connection failed"
        return f"is unreachable or stopped ({first})", False
    return f"refused the request ({name}: {details.splitlines()[0][:200] if details else 'no details'})", False


def _extra(fmt: str) -> str:
    from edgekit.formats import get_format

    return get_format(fmt).runtime_extra
