"""The workers a coordinator talks to: one channel each, which are down and why, and the background probe
that lets a worker that failed rejoin once it answers the standard health check (``grpc.health.v1``).

Marking down and rejoining are thread-safe: many requests run at once (``edgekit serve``), and any of them
may see a worker fail. The probe runs on one daemon thread, only while some worker is down; every check it
makes is bounded by ``probe_timeout`` and it backs off (up to ``PROBE_MAX_S``) from a worker that keeps
failing. A worker that answers SERVING rejoins only after ``on_rejoin`` (the coordinator: does it hold its
shards, redeploy them if not) agrees.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edgekit.fleet.auth import ClientAuth
from edgekit.splitter.wire import proto

log = logging.getLogger(__name__)

SERVICE = "edgekit.split.v1.ShardWorker"
PROBE_S = 0.25  # first wait before probing a worker that went down
PROBE_MAX_S = 4.0
STRAGGLER_LOSSES = 5  # hedge races lost in a row before a worker is treated as down
# A restarted worker must be reached again in about a second, not after gRPC's default reconnect backoff (to 120 s).
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20),
    ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]  # fmt: skip


@dataclass(frozen=True)
class Rejoin:
    worker: str
    down_for_s: float
    why: str  # what had put it down


class WorkerSet:
    def __init__(
        self,
        addresses: Mapping[str, str],
        auth: ClientAuth,
        probe_timeout: float = 1.0,
        on_rejoin: Callable[[str], bool] | None = None,
    ):
        _, pb_grpc = proto()
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self._health_pb2 = health_pb2
        self.addresses = dict(addresses)
        self.channels = {d: auth.channel(a, d, CHANNEL_OPTIONS) for d, a in self.addresses.items()}
        self.stubs = {d: pb_grpc.ShardWorkerStub(c) for d, c in self.channels.items()}
        self._checks = {d: health_pb2_grpc.HealthStub(c) for d, c in self.channels.items()}
        self.probe_timeout = probe_timeout
        self.on_rejoin = on_rejoin
        self.rejoins: list[Rejoin] = []
        self._down: dict[str, tuple[str, float]] = {}  # worker -> (why, since when)
        self._losses: dict[str, int] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._prober: threading.Thread | None = None

    def label(self, worker: str) -> str:
        return f"{worker} ({self.addresses[worker]})"

    @property
    def down(self) -> dict[str, str]:
        """worker -> why it is down, now."""
        with self._lock:
            return {d: why for d, (why, _) in self._down.items()}

    def is_up(self, worker: str) -> bool:
        with self._lock:
            return worker not in self._down

    def why_down(self, worker: str) -> str:
        with self._lock:
            return self._down.get(worker, ("", 0.0))[0]

    def mark_down(self, worker: str, why: str) -> None:
        with self._lock:
            if worker in self._down or self._closed:
                return
            self._down[worker] = (why, time.monotonic())
            self._losses.pop(worker, None)
            if self._prober is None:
                self._prober = threading.Thread(target=self._probe_loop, name="edgekit-probe", daemon=True)
                self._prober.start()
            self._wake.notify_all()
        log.info("worker %s %s; marked down, probing it in the background", self.label(worker), why)

    def won_race(self, worker: str) -> None:
        with self._lock:
            self._losses.pop(worker, None)

    def lost_race(self, worker: str) -> None:
        """A call to ``worker`` was hedged around and the hedge answered first."""
        with self._lock:
            self._losses[worker] = losses = self._losses.get(worker, 0) + 1
        if losses >= STRAGGLER_LOSSES:
            self.mark_down(worker, f"lost {losses} hedge races in a row (a straggler)")

    def serving(self, worker: str) -> bool:
        """One standard health check of the worker's service, bounded by ``probe_timeout``."""
        request = self._health_pb2.HealthCheckRequest(service=SERVICE)
        try:
            reply = self._checks[worker].Check(request, timeout=self.probe_timeout)
        except Exception:  # noqa: BLE001 -- any failure (unreachable, stopped, refused) means not yet
            return False
        return reply.status == self._health_pb2.HealthCheckResponse.SERVING

    def _probe_loop(self) -> None:
        waits: dict[str, float] = {}
        next_at: dict[str, float] = {}
        while True:
            with self._lock:
                if self._closed:
                    return
                down = dict(self._down)
                now = time.monotonic()
                for worker in list(next_at):
                    if worker not in down:
                        next_at.pop(worker), waits.pop(worker, None)
                for worker, (_, since) in down.items():
                    next_at.setdefault(worker, since + PROBE_S)
                due = [w for w in down if next_at[w] <= now]
                if not due:
                    self._wake.wait(timeout=min([t - now for t in next_at.values()] or [PROBE_MAX_S]))
                    continue
            for worker in due:
                if self._closed:
                    return
                back = self.serving(worker) and (self.on_rejoin is None or self._agree(worker))
                if back:
                    self._rejoin(worker)
                else:
                    waits[worker] = min(PROBE_MAX_S, waits.get(worker, PROBE_S) * 2)
                    next_at[worker] = time.monotonic() + waits[worker]

    def _agree(self, worker: str) -> bool:
        try:
            return bool(self.on_rejoin(worker))
        except Exception as exc:  # noqa: BLE001 -- a failed redeploy keeps it down, to be probed again
            log.info("worker %s answers but cannot rejoin yet: %s", self.label(worker), exc)
            return False

    def _rejoin(self, worker: str) -> None:
        with self._lock:
            why, since = self._down.pop(worker, ("", time.monotonic()))
            self.rejoins.append(Rejoin(worker, time.monotonic() - since, why))
        log.info("worker %s is serving again; it rejoins", self.label(worker))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            prober = self._prober
        if prober is not None:
            prober.join(timeout=self.probe_timeout + 1.0)
        for channel in self.channels.values():
            channel.close()
