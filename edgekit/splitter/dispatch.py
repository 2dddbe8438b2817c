"""One request's shard calls: each shard to its first live holder, retried on a replica when a worker fails,
times out or answers wrongly, hedged on a replica when it is slow -- all under the request's one deadline.

Everything runs on the caller's thread: the calls are gRPC futures whose completion callbacks put an event
on this request's queue, and the loop below waits for the next event or the next hedge timer. Many requests
may run at once (one per client thread); they share only the thread-safe ``WorkerSet`` and latency window.

A call's own deadline is the request's remaining time divided among the holders still untried (the primary
of a shard with one replica gets half), so a worker that hangs leaves time for its replica; a shard with no
replica gets all of it. A hedge gets whatever remains.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.splitter.hedging import HedgePolicy, ShardLatencies
from edgekit.splitter.plan import ShardPlan
from edgekit.splitter.records import ANSWERED, CANCELLED, FAILED, Attempt, ShardCall
from edgekit.splitter.wire import decode
from edgekit.splitter.workerset import WorkerSet

GRACE_S = 0.05  # past the deadline, for gRPC's own DEADLINE_EXCEEDED to arrive


@dataclass
class _Flight:
    worker: str
    future: Any
    sent_s: float
    budget_s: float
    hedge: bool


@dataclass
class _Shard:
    plan: ShardPlan
    untried: list[str]
    flights: dict[int, _Flight] = field(default_factory=dict)
    retries: int = 0
    hedges: int = 0
    hedge_at: float | None = None
    done: bool = False
    failure: tuple[str, str] | None = None  # (worker, what) of the last failure


@dataclass(frozen=True)
class FanOut:
    features: dict[str, np.ndarray]  # shard -> (B, feature_dim)
    calls: tuple[ShardCall, ...]
    attempts: tuple[Attempt, ...]
    failures: dict[str, tuple[str, str]]  # shard that got no answer -> (worker, what) of its last failure


class Dispatcher:
    """Sends shard calls for many requests at once; ``explain(worker, exc, budget_s)`` turns a gRPC error into
    words (and raises for an authentication failure, which no replica can fix)."""

    def __init__(
        self,
        workers: WorkerSet,
        usable: Callable[[ShardPlan], list[str]],
        explain: Callable[[str, Any, float], str],
        hedge: HedgePolicy | None,
        latencies: ShardLatencies,
    ):
        import grpc

        from edgekit.splitter.wire import proto

        self._pb, _ = proto()
        self._grpc = grpc
        self.workers, self.usable, self.explain = workers, usable, explain
        self.hedge, self.latencies = hedge, latencies

    def run(self, shards: Sequence[ShardPlan], tensor: Any, batch: int, deadline: float) -> FanOut:
        events: queue.SimpleQueue = queue.SimpleQueue()
        ids = itertools.count()
        states = [_Shard(s, self.usable(s)) for s in shards]
        features: dict[str, np.ndarray] = {}
        calls: list[ShardCall] = []
        attempts: list[Attempt] = []
        requests = {s.name: self._pb.InferRequest(shard=s.name, inputs=[tensor]) for s in shards}

        def launch(state: _Shard, hedge: bool) -> bool:
            now = time.perf_counter()
            remaining = deadline - now
            if remaining <= 0 or not state.untried:
                return False
            worker = state.untried.pop(0)
            budget = remaining if hedge else remaining / (1 + len(state.untried))
            future = self.workers.stubs[worker].Infer.future(requests[state.plan.name], timeout=budget)
            fid = next(ids)
            state.flights[fid] = _Flight(worker, future, now, budget, hedge)
            future.add_done_callback(lambda _f, s=state, i=fid: events.put((s, i, time.perf_counter())))
            delay = self.latencies.delay_ms(state.plan.name, self.hedge)
            state.hedge_at = now + delay / 1e3 if delay is not None and state.untried and not hedge else None
            state.hedges += int(hedge)
            return True

        def fail(state: _Shard, flight: _Flight, ended: float, what: str) -> None:
            attempts.append(Attempt(state.plan.name, flight.worker, flight.sent_s, ended, FAILED, flight.hedge, what))
            state.retries += 1
            state.failure = (flight.worker, what)
            if state.flights:
                return  # a hedge is still racing
            state.untried = [w for w in state.untried if self.workers.is_up(w)]  # skip holders down by now
            if not launch(state, hedge=False):
                state.done = True

        def answer(state: _Shard, flight: _Flight, reply: Any, ended: float) -> None:
            output = decode(reply.outputs[0]) if reply.outputs else None
            dim = state.plan.feature_dim
            if output is None or output.size != batch * dim:
                got = None if output is None else list(output.shape)
                self.workers.mark_down(flight.worker, f"returned features of shape {got}")
                fail(state, flight, ended, f"returned features of shape {got}, expected {[batch, dim]}")
                return
            round_trip = (ended - flight.sent_s) * 1e3
            self.latencies.add(state.plan.name, round_trip)
            features[state.plan.name] = output.reshape(batch, dim)
            calls.append(ShardCall(state.plan.name, flight.worker, reply.compute_ms, round_trip,
                                   requests[state.plan.name].ByteSize(), reply.ByteSize(), state.retries,
                                   state.hedges, flight.hedge))  # fmt: skip
            attempts.append(Attempt(state.plan.name, flight.worker, flight.sent_s, ended, ANSWERED, flight.hedge))
            self.workers.won_race(flight.worker)
            finish(state, ended, lost_to_hedge=flight.hedge)

        def finish(state: _Shard, now: float, lost_to_hedge: bool = False) -> None:
            state.done = True
            for other in state.flights.values():
                other.future.cancel()
                attempts.append(Attempt(state.plan.name, other.worker, other.sent_s, now, CANCELLED, other.hedge))
                if lost_to_hedge and not other.hedge:
                    self.workers.lost_race(other.worker)
            state.flights.clear()

        for state in states:
            if not launch(state, hedge=False):
                state.done = True
        while not all(s.done for s in states):
            live = [s for s in states if not s.done]
            timers = [s.hedge_at for s in live if s.hedge_at is not None]
            wake = min([*timers, deadline + GRACE_S])
            try:
                state, fid, ended = events.get(timeout=max(0.0, wake - time.perf_counter()))
            except queue.Empty:
                now = time.perf_counter()
                if now >= deadline + GRACE_S:
                    for s in live:  # gRPC's deadline should have ended these; do not wait for it
                        if s.flights:
                            worker = next(iter(s.flights.values())).worker
                            s.failure = (worker, "did not answer before the request's deadline")
                        finish(s, now)
                    break
                for s in live:
                    if s.hedge_at is not None and s.hedge_at <= now:
                        s.hedge_at = None
                        s.untried = [w for w in s.untried if self.workers.is_up(w)]
                        launch(s, hedge=True)
                continue
            flight = state.flights.pop(fid, None)
            if state.done or flight is None:
                continue  # a call cancelled after its shard was answered
            try:
                reply = flight.future.result()
            except self._grpc.FutureCancelledError:
                continue
            except self._grpc.RpcError as exc:
                what = self.explain(flight.worker, exc, flight.budget_s)
                self.workers.mark_down(flight.worker, what)
                fail(state, flight, ended, what)
                continue
            answer(state, flight, reply, ended)
        failures = {s.plan.name: s.failure or self._never_sent(s.plan) for s in states if s.plan.name not in features}
        return FanOut(features, tuple(calls), tuple(attempts), failures)

    def _never_sent(self, shard: ShardPlan) -> tuple[str, str]:
        """(worker, why) for a shard none of whose holders could be asked."""
        worker = shard.holders[0]
        why = self.workers.why_down(worker) or "was left out of this plan's workers"
        return worker, f"is down ({why})"
