"""A discrete-event simulation of one coordinator serving split plans over a fleet, under a replica policy.

What happens to a request, as the coordinator in issue #16 does it: it arrives (Poisson or periodic), waits for the
coordinator's CPU (a FIFO queue served by ``coordinator_cores`` cores; each shard call costs a measured amount to
send and to receive), and every shard of its plan is sent to the least-busy replica the coordinator believes is up
(ties broken at random). A device runs one call at a time (its runtime thread), FIFO. A call that fails (a
connection reset) or has not answered within ``attempt_timeout_ms`` is retried on an untried replica; a device that
failed a call is believed down until a background probe (every ``probe_s``) finds it up. With hedging, a call not
answered after the shard's observed p95 (or a fixed time) is also sent to another replica; the first answer wins and
the other is cancelled (dropped if still queued on its device; a call already running runs to its end, as a runtime
cannot be interrupted). The request is answered when every shard has answered; it is *lost* when some shard has no
replica left alive on a device that is up, *late* when replicas were alive but the deadline passed (a straggler, or
the coordinator's queue), and *given up* when every replica was tried and the live ones all outlasted the attempt
timeout.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgekit.errors import ConfigError
from edgekit.splitter.simulation.measured import FailureModel, MeasuredCosts, SlowDevices
from edgekit.splitter.simulation.placement import Placement, place

# Event kinds, in the order they are handled when they fall at the same instant: an answer that arrives exactly
# when a hedge or a timeout is due counts as an answer.
REPLY, RECEIVED, ERROR, AT_DEVICE, DEVICE_DONE, ARRIVAL, DISPATCH, HEDGE, TIMEOUT, DEADLINE = range(10)
CRASH, RECOVER, PROBE = 10, 11, 12
HEDGE_WINDOW, HEDGE_REFRESH, HEDGE_MIN_SAMPLES = 256, 32, 32
ARRIVALS = ("poisson", "periodic")
ANSWERED, LOST, LATE, GAVE_UP = "answered", "lost", "late", "gave_up"
TIMER_SLACK_S = 1e-6  # a hedge fires strictly after its threshold: an answer at the threshold itself is in time


@dataclass(frozen=True)
class Policy:
    name: str
    replicas: int = 1
    hedge_after: str | float | None = None  # None: no hedging; "auto": the shard's observed p95; or milliseconds
    spread_domains: bool = True  # place a shard's replicas in different failure domains when there are enough

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"policy {self.name}: replicas must be at least 1")
        if self.hedge_after is not None and self.hedge_after != "auto" and not float(self.hedge_after) > 0:
            raise ConfigError(f"policy {self.name}: hedge_after is 'auto' or a positive number of milliseconds")


@dataclass(frozen=True)
class Kill:
    """Fault injection: ``device`` crashes at ``at_s`` and stays down (a SIGKILL when loud, a pulled plug when
    silent), on top of the random failure process."""

    device: int
    at_s: float
    silent: bool = False


@dataclass(frozen=True)
class Scenario:
    devices: int = 100
    plans: int = 25  # independent split plans served by the fleet (e.g. one per camera group)
    shards: int = 4  # per plan; shard i draws its costs from measured shard i mod (measured shards)
    slots: int = 4  # shard bundles a device's memory holds
    rate: float = 150.0  # requests per second over all plans
    requests: int = 10_000
    arrivals: str = "poisson"
    deadline_ms: float = 100.0
    attempt_timeout_ms: float = 25.0
    probe_s: float = 1.0
    coordinator_cores: int = 1
    slow: SlowDevices = field(default_factory=SlowDevices)
    failures: FailureModel = field(default_factory=FailureModel)
    domains: int = 1  # failure domains (a PoE switch, a power strip): devices split into this many equal blocks
    domain_failures: FailureModel = field(default_factory=FailureModel)  # a whole domain at once, always silent
    kills: tuple[Kill, ...] = ()

    def __post_init__(self) -> None:
        if any(not 0 <= k.device < self.devices for k in self.kills):
            raise ConfigError(f"a kill names a device outside 0..{self.devices - 1}")
        if not 1 <= self.domains <= self.devices:
            raise ConfigError(f"domains must be between 1 and the number of devices ({self.devices})")
        if self.arrivals not in ARRIVALS:
            raise ConfigError(f"arrivals must be one of {', '.join(ARRIVALS)}, got {self.arrivals!r}")
        if self.rate <= 0 or self.requests < 1 or self.deadline_ms <= 0 or self.attempt_timeout_ms <= 0:
            raise ConfigError("rate, requests, deadline and attempt timeout must be positive")
        if self.coordinator_cores < 1 or self.probe_s <= 0:
            raise ConfigError("at least one coordinator core and a positive probe interval")

    def domain_of(self, device: int) -> int:
        return device * self.domains // self.devices


@dataclass(frozen=True)
class SimResult:
    policy: str
    seed: int
    latency_ms: np.ndarray = field(repr=False)  # answered requests, end to end, in arrival order
    answered: int
    lost: int  # some shard had no replica alive
    late: int  # replicas alive, deadline passed
    gave_up: int  # replicas alive, every one tried and timed out (stragglers taken for dead)
    calls: int
    retries: int
    hedges: int
    hedge_wins: int
    crashes: int
    coordinator_busy: float  # share of the coordinator's core-time spent working
    under_replicated: int  # shards placed on fewer than K devices

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latency_ms, q)) if len(self.latency_ms) else math.nan


class _Call:
    __slots__ = ("request", "shard", "device", "hedge", "compute", "network", "sent", "open", "replied", "epoch")

    def __init__(self, request, shard, device, hedge, compute, network, sent, epoch):
        self.request, self.shard, self.device, self.hedge = request, shard, device, hedge
        self.compute, self.network, self.sent, self.epoch = compute, network, sent, epoch
        self.open, self.replied = True, False


class _Request:
    __slots__ = ("plan", "arrival", "done", "waiting", "tried", "live", "cpu_per_call")

    def __init__(self, plan: int, arrival: float, shards: int, cpu_per_call: float):
        self.plan, self.arrival, self.done, self.cpu_per_call = plan, arrival, False, cpu_per_call
        self.waiting = set(range(shards))  # shards not answered yet
        self.tried: list[set[int]] = [set() for _ in range(shards)]
        self.live: list[list[_Call]] = [[] for _ in range(shards)]


class Simulation:
    """``Simulation(costs, scenario, policy, seed).run()`` -> SimResult. Same seed, same result.

    The seed fixes the placement's tie-breaks, the arrivals, every device's slowness and its crash times through
    separate streams, so two policies run with one seed meet the same requests, stragglers and crashes."""

    def __init__(self, costs: MeasuredCosts, scenario: Scenario, policy: Policy, seed: int):
        self.costs, self.s, self.policy, self.seed = costs, scenario, policy, seed
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
        self.rng_place, self.rng_arrive, self.rng_cost, fail_rng, slow_rng = streams
        n = scenario.devices
        domains = [scenario.domain_of(d) for d in range(n)] if policy.spread_domains else None
        self.placement: Placement = place(scenario.plans, scenario.shards, n, policy.replicas, scenario.slots,
                                          self.rng_place, domains)  # fmt: skip
        self.slow = (slow_rng.random(n) < scenario.slow.fraction).tolist()
        self.slow_rng = slow_rng
        # Every outage is drawn up front, so it is the same whatever the policy does: (start, device, seconds
        # down, silent). Outages may overlap (a device already rebooting when its switch dies); a device is up
        # when none of its outages is running.
        horizon = 2.0 * scenario.requests / scenario.rate + 60.0
        self.outages = [
            (t, d, down, silent)
            for d in range(n)
            for t, down, silent in self._timeline(fail_rng, horizon, scenario.failures, restart=True)
        ]
        for domain in range(scenario.domains):
            members = [d for d in range(n) if scenario.domain_of(d) == domain]
            for t, down, _ in self._timeline(fail_rng, horizon, scenario.domain_failures, restart=False):
                self.outages += [(t, d, down, True) for d in members]  # the network is gone: nothing is reset
        self.outages += [(k.at_s, k.device, math.inf, k.silent) for k in scenario.kills]
        self.outage_count = [0] * n
        # Plain lists: one element at a time is all the loop does, and numpy scalars are slow at that.
        self.up, self.silent = [True] * n, [False] * n
        self.believed_down, self.probing = [False] * n, [False] * n
        self.epoch, self.outstanding = [0] * n, [0] * n
        self.queue: list[deque[_Call]] = [deque() for _ in range(n)]
        self.busy: list[_Call | None] = [None] * n
        self.cores = [0.0] * scenario.coordinator_cores  # when each core is next free (seconds)
        self.cpu_spent = 0.0
        self.rt_window: dict[tuple[int, int], deque[float]] = {}
        self.hedge_ms: dict[tuple[int, int], float] = {}
        self.events: list = []
        self.seq = 0
        self.now = 0.0
        self.latency: list[float] = []
        self.counts = dict.fromkeys((LOST, LATE, GAVE_UP, "calls", "retries", "hedges", "hedge_wins", "crashes"), 0)
        self.arrived = self.finished = 0
        self.observed: dict[tuple[int, int], int] = {}
        self.handlers: dict[int, Callable] = {
            ARRIVAL: self._arrival, DISPATCH: self._dispatch, AT_DEVICE: self._at_device,
            DEVICE_DONE: self._device_done, REPLY: self._reply, RECEIVED: self._received, ERROR: self._error,
            TIMEOUT: self._timeout, HEDGE: self._hedge, DEADLINE: self._deadline, CRASH: self._crash,
            RECOVER: self._recover, PROBE: self._probe,
        }  # fmt: skip

    def _timeline(self, rng: np.random.Generator, horizon: float, f: FailureModel, restart: bool) -> list:
        """(start, seconds down, silent) up to ``horizon``; down = the assumed reboot (+ a measured worker restart).

        The fleet starts in its long-run state, not all up: a device is down at time 0 with the down fraction's
        probability, for a uniform share of one outage (otherwise a run shorter than the MTBF sees too few)."""
        out: list[tuple[float, float, bool]] = []
        if not f.enabled:
            return out

        def down() -> float:
            extra = float(self.costs.restart_s[int(rng.integers(len(self.costs.restart_s)))]) if restart else 0.0
            return f.reboot_s + extra

        t = f.time_to_crash(rng)
        if rng.random() < f.down_fraction:
            out.append((0.0, down() * rng.random(), bool(rng.random() < f.silent)))
            t = out[0][1] + f.time_to_crash(rng)
        while t < horizon:
            out.append((t, down(), bool(rng.random() < f.silent)))
            t += out[-1][1] + f.time_to_crash(rng)
        return out

    # -- the loop ----------------------------------------------------------------------------------

    def at(self, t: float, kind: int, *args) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, args))

    def run(self) -> SimResult:
        self.at(0.0, ARRIVAL)
        for start, device, down, silent in self.outages:
            self.at(start, CRASH, device, down, silent)
        while self.events and self.finished < self.s.requests:
            self.now, kind, _, args = heapq.heappop(self.events)
            self.handlers[kind](*args)
        c = self.counts
        elapsed = max(self.now, 1e-9) * len(self.cores)
        return SimResult(
            self.policy.name, self.seed, np.asarray(self.latency), len(self.latency), c[LOST], c[LATE], c[GAVE_UP],
            c["calls"], c["retries"], c["hedges"], c["hedge_wins"], c["crashes"], min(1.0, self.cpu_spent / elapsed),
            len(self.placement.short),
        )  # fmt: skip

    def cpu(self, ms: float) -> float:
        """Queue ``ms`` of work on the coordinator's earliest-free core (FIFO); returns when it is done."""
        core = min(range(len(self.cores)), key=self.cores.__getitem__)
        start = max(self.now, self.cores[core])
        self.cores[core] = start + ms / 1e3
        self.cpu_spent += ms / 1e3
        return self.cores[core]

    # -- requests ----------------------------------------------------------------------------------

    def _arrival(self) -> None:
        s = self.s
        plan = int(self.rng_arrive.integers(s.plans))
        request = _Request(plan, self.now, s.shards, self.costs.cpu_per_call_ms(self.rng_cost))
        self.arrived += 1
        if self.arrived < s.requests:
            gap = self.rng_arrive.exponential(1.0 / s.rate) if s.arrivals == "poisson" else 1.0 / s.rate
            self.at(self.now + gap, ARRIVAL)
        self.at(self.now + s.deadline_ms / 1e3, DEADLINE, request)
        # Sending every shard's call costs half of a call's measured CPU each (the other half is the reply).
        self.at(self.cpu(request.cpu_per_call / 2 * s.shards), DISPATCH, request)

    def _dispatch(self, request: _Request) -> None:
        for shard in range(self.s.shards):
            if request.done:
                return
            self._send(request, shard, hedge=False, paid=True)

    def _send(self, request: _Request, shard: int, hedge: bool, paid: bool = False) -> None:
        """Call the least-busy untried replica believed up. A retry with none believed up tries one believed down
        (a device timed out for being slow may still answer; giving up is a sure failure); with no untried replica
        and no call running, the request fails now, with a named error rather than at its deadline. A retry or a
        hedge pays its own sending CPU (``paid``: the request's dispatch already did)."""
        replicas = self.placement.replicas[(request.plan, shard)]
        untried = [d for d in replicas if d not in request.tried[shard]]
        choices = [d for d in untried if not self.believed_down[d]] or ([] if hedge else untried)
        if not choices:
            if not hedge and not request.live[shard]:
                self._finish(request, self._failure(request))
            return
        # Least outstanding calls first; ties (the usual case at light load) by a draw, so replicas share the load.
        device = min(choices, key=lambda d: (self.outstanding[d], self.rng_cost.random()))
        compute, network = self.costs.call_cost_ms(self.rng_cost, shard)
        if self.slow[device]:
            compute *= self.s.slow.multiplier(self.slow_rng)
        sent = self.now if paid else self.cpu(request.cpu_per_call / 2)
        call = _Call(request, shard, device, hedge, compute / 1e3, network / 1e3, sent, self.epoch[device])
        request.tried[shard].add(device)
        request.live[shard].append(call)
        self.outstanding[device] += 1
        self.counts["calls"] += 1
        self.at(sent + call.network / 2, AT_DEVICE, call)
        self.at(sent + self.s.attempt_timeout_ms / 1e3, TIMEOUT, call)
        threshold = self._hedge_threshold(request.plan, shard)
        if threshold is not None and not hedge:
            self.at(sent + threshold / 1e3 + TIMER_SLACK_S, HEDGE, call)

    def _hedge_threshold(self, plan: int, shard: int) -> float | None:
        after = self.policy.hedge_after
        if after is None or self.policy.replicas < 2:
            return None
        return float(after) if after != "auto" else self.hedge_ms.get((plan, shard))

    def _close(self, call: _Call) -> None:
        if call.open:
            call.open = False
            self.outstanding[call.device] -= 1
            live = call.request.live[call.shard]
            if call in live:
                live.remove(call)

    def _finish(self, request: _Request, outcome: str = ANSWERED) -> None:
        request.done = True
        self.finished += 1
        for calls in request.live:
            for call in list(calls):
                self._close(call)
        if outcome == ANSWERED:
            self.latency.append((self.now - request.arrival) * 1e3)
        else:
            self.counts[outcome] += 1

    def _failure(self, request: _Request, at_deadline: bool = False) -> str:
        """Lost when some missing shard has no replica on a device that is up; otherwise late (deadline) or given up
        (every replica tried, alive ones too slow for the attempt timeout)."""
        replicas = self.placement.replicas
        if any(not any(self.up[d] for d in replicas[(request.plan, shard)]) for shard in request.waiting):
            return LOST
        return LATE if at_deadline else GAVE_UP

    def _deadline(self, request: _Request) -> None:
        if not request.done:
            self._finish(request, self._failure(request, at_deadline=True))

    # -- devices -----------------------------------------------------------------------------------

    def _at_device(self, call: _Call) -> None:
        if not call.open:
            return
        d = call.device
        if not self.up[d] or call.epoch != self.epoch[d]:
            if not self.silent[d]:  # the host answers with a reset; a silent crash lets the call time out
                self.at(self.now + call.network / 2, ERROR, call)
            return
        self.queue[d].append(call)
        if self.busy[d] is None:
            self._start_next(d)

    def _start_next(self, d: int) -> None:
        while self.queue[d]:
            call = self.queue[d].popleft()
            if call.open:  # a cancelled call still queued is dropped without running
                self.busy[d] = call
                self.at(self.now + call.compute, DEVICE_DONE, call, int(self.epoch[d]))
                return
        self.busy[d] = None

    def _device_done(self, call: _Call, epoch: int) -> None:
        d = call.device
        if epoch != self.epoch[d]:
            return  # the device crashed while running it
        self._start_next(d)
        if call.open:
            self.at(self.now + call.network / 2, REPLY, call)

    def _crash(self, d: int, down: float, silent: bool) -> None:
        self.counts["crashes"] += 1
        self.outage_count[d] += 1
        if math.isfinite(down):
            self.at(self.now + down, RECOVER, d)
        if not self.up[d]:
            return  # already down: this outage only keeps it down longer
        self.up[d], self.epoch[d], self.silent[d] = False, self.epoch[d] + 1, silent
        stranded = [c for c in ([self.busy[d]] if self.busy[d] else []) + list(self.queue[d]) if c.open]
        self.queue[d].clear()
        self.busy[d] = None
        if not silent:
            self._believe_down(d)  # the connection reset reaches the coordinator's channel
            for call in stranded:
                self.at(self.now + call.network / 2, ERROR, call)

    def _recover(self, d: int) -> None:
        self.outage_count[d] -= 1
        self.up[d] = self.outage_count[d] == 0

    def _believe_down(self, d: int) -> None:
        self.believed_down[d] = True
        if not self.probing[d]:
            self.probing[d] = True
            self.at(self.now + self.s.probe_s, PROBE, d)

    def _probe(self, d: int) -> None:
        if self.up[d]:
            self.believed_down[d] = self.probing[d] = False
        else:
            self.at(self.now + self.s.probe_s, PROBE, d)

    # -- answers, failures, hedges -----------------------------------------------------------------

    def _reply(self, call: _Call) -> None:
        if not call.open or call.request.done:
            return
        call.replied = True
        self._observe(call.request.plan, call.shard, (self.now - call.sent) * 1e3)
        self.at(self.cpu(call.request.cpu_per_call / 2), RECEIVED, call)

    def _observe(self, plan: int, shard: int, round_trip_ms: float) -> None:
        window = self.rt_window.setdefault((plan, shard), deque(maxlen=HEDGE_WINDOW))
        window.append(round_trip_ms)
        seen = self.observed[(plan, shard)] = self.observed.get((plan, shard), 0) + 1
        # the p95 over the window, refreshed every HEDGE_REFRESH answers (a percentile per answer is slow)
        if seen >= HEDGE_MIN_SAMPLES and seen % HEDGE_REFRESH == 0:
            self.hedge_ms[(plan, shard)] = float(np.percentile(window, 95))

    def _received(self, call: _Call) -> None:
        request = call.request
        if request.done or call.shard not in request.waiting:
            self._close(call)
            return
        request.waiting.discard(call.shard)
        if call.hedge:
            self.counts["hedge_wins"] += 1
        for other in list(request.live[call.shard]):
            self._close(other)  # the loser is cancelled
        if not request.waiting:
            self._finish(request)

    def _failed(self, call: _Call) -> None:
        """A call ended without an answer: believe its device down, and retry the shard if nothing else runs."""
        request = call.request
        self._close(call)
        self._believe_down(call.device)
        if request.done or call.shard not in request.waiting or request.live[call.shard]:
            return
        before = self.counts["calls"]
        self._send(request, call.shard, hedge=False)
        self.counts["retries"] += self.counts["calls"] - before

    def _error(self, call: _Call) -> None:
        if call.open:
            self._failed(call)

    def _timeout(self, call: _Call) -> None:
        if call.open and not call.replied:
            self._failed(call)

    def _hedge(self, call: _Call) -> None:
        request = call.request
        if not call.open or call.replied or request.done or len(request.live[call.shard]) > 1:
            return
        before = self.counts["calls"]
        self._send(request, call.shard, hedge=True)
        self.counts["hedges"] += self.counts["calls"] - before
