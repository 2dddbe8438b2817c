"""Replicas, failover, hedging and rejoin over real worker processes on loopback: a worker SIGKILLed, SIGSTOPped
or restarted while a coordinator keeps answering from its replicas, bit for bit the answer it gave before."""

from __future__ import annotations

import dataclasses
import signal
import time

import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.errors import BundleError
from edgekit.splitter import SplitCoordinator
from edgekit.splitter.local import start_local_worker
from edgekit.splitter.plan import ShardPlan
from edgekit.splitter.records import CANCELLED, FAILED
from edgekit.splitter.replicas import with_replicas
from edgekit.splitter.workerset import WorkerSet
from tests.helpers.workers import local_predictions
from tests.splitter.conftest import FORMATS

pytestmark = pytest.mark.workers

PORTS = {"dev0": 51201, "dev1": 51202, "dev2": 51203}  # this suite's loopback ports (51200-51299)
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def replicated_plan(split_plan):
    """The session's plan, every device able to run every format, each shard on two devices."""
    devices = [dataclasses.replace(d, runtimes=FORMATS) for d in split_plan.devices]
    return with_replicas(split_plan, 2, devices)


@pytest.fixture(scope="module")
def images(split_plan):
    split = load_dataset("digits", tuple(split_plan.input["shape"]))
    return split.x_test[:12], split.y_test[:12]


class Fleet:
    """One worker per device on a fixed port (a restart keeps its address), restarted when a test left it dead."""

    def __init__(self, root):
        self.root = root
        self.workers = {}
        self.workdirs = {}

    def start(self, device, fresh=False):
        if fresh or device not in self.workdirs:
            self.workdirs[device] = self.root / f"{device}-{time.monotonic_ns()}"
        workdir = self.workdirs[device]
        self.workers[device] = start_local_worker(device, workdir, "--threads", "1", port=PORTS[device])
        return self.workers[device]

    def ensure_alive(self):
        for device in PORTS:
            w = self.workers.get(device)
            if w is not None:
                w.send(signal.SIGCONT)
            if w is None or w.proc.poll() is not None:
                if w is not None:
                    w.proc.wait()
                self.start(device)

    @property
    def addresses(self):
        return {d: w.address for d, w in self.workers.items()}

    def stop_all(self):
        for w in self.workers.values():
            w.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = Fleet(tmp_path_factory.mktemp("failover"))
    yield fleet
    fleet.stop_all()


@pytest.fixture
def alive(fleet, replicated_plan):
    """Every worker running and holding its shards (deployed by a coordinator on first use)."""
    fleet.ensure_alive()
    with SplitCoordinator(replicated_plan, fleet.addresses, timeout=180) as coordinator:
        coordinator.deploy()
    return fleet


def reference(plan, addresses, x):
    """Each image's logits from the unreplicated plan (primaries only)."""
    unreplicated = dataclasses.replace(plan, shards=tuple(dataclasses.replace(s, replicas=()) for s in plan.shards))
    with SplitCoordinator(unreplicated, addresses, timeout=TIMEOUT) as coordinator:
        return [coordinator.infer(x[i : i + 1]).logits for i in range(len(x))]


def test_replicas_are_placed_within_memory_and_runtimes_and_the_report_names_the_rest(split_plan, replicated_plan):
    for shard in replicated_plan.shards:
        assert len(shard.holders) == 2 and len(set(shard.holders)) == 2
    used = replicated_plan.report["replicas"]["memory_used"]
    assert all(used[d.name] <= d.memory_bytes for d in replicated_plan.devices)
    assert replicated_plan.report["replicas"]["short"] == {}
    # The plan's own devices run one format each: no shard can be replicated, and the report says why.
    alone = with_replicas(split_plan, 2)
    assert all(s.replicas == () for s in alone.shards)
    short = alone.report["replicas"]["short"]
    assert set(short) == {s.name for s in split_plan.shards}
    assert all("no other device can run" in why for why in short.values())
    # Too little memory left anywhere else: named with the shortfall.
    biggest = max(s.memory_bytes for s in split_plan.shards)
    tight = [dataclasses.replace(d, runtimes=FORMATS, memory_bytes=biggest + 1) for d in split_plan.devices]
    short = with_replicas(split_plan, 3, tight).report["replicas"]["short"]
    assert any("MB" in why and "the most left" in why for why in short.values())
    # plan.json: replicas round-trip, an old entry without them loads with none.
    for shard in replicated_plan.shards:
        data = shard.to_json()
        assert ShardPlan.from_json(data) == shard
        del data["replicas"]
        assert ShardPlan.from_json(data).replicas == ()


def test_plan_with_a_replica_naming_its_primary_is_refused(replicated_plan, tmp_path):
    import json

    from edgekit.splitter.plan import load_plan

    data = replicated_plan.to_json()
    data["shards"][0]["replicas"] = [data["shards"][0]["device"]]
    (tmp_path / "plan.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="names a device twice"):
        load_plan(tmp_path)


def test_deploy_reaches_every_holder_in_parallel_within_one_deadline(replicated_plan, fleet):
    fleet.stop_all()
    fleet.workers = {}
    for device in PORTS:
        fleet.start(device, fresh=True)  # empty workdirs: everything must be sent
    # the deploy's one deadline is max(timeout, 60 s) + 1 s a MiB: generous, as two workers import torch at once
    with SplitCoordinator(replicated_plan, fleet.addresses, timeout=120) as coordinator:
        sent = coordinator.deploy()
        outcome = coordinator.last_deploy
        health = coordinator.health()
    assert sorted(sent) == sorted(s.name for s in replicated_plan.shards for _ in s.holders)
    assert outcome.seconds < outcome.deadline_s and not outcome.failed
    for shard in replicated_plan.shards:
        for device in shard.holders:
            assert {s.shard: s.digest for s in health[device].shards}[shard.name] == shard.digest
    # Uploads to different workers overlapped in time (one after another they could not have).
    spans = {}
    for u in outcome.uploads:
        begin, end = spans.get(u.worker, (u.started_s, u.started_s + u.seconds))
        spans[u.worker] = (min(begin, u.started_s), max(end, u.started_s + u.seconds))
    assert max(b for b, _ in spans.values()) < min(e for _, e in spans.values())


def test_a_sigkilled_worker_fails_over_to_its_replicas_bit_identically(replicated_plan, alive, images):
    x, _ = images
    expected = reference(replicated_plan, alive.addresses, x)
    np.testing.assert_allclose(np.concatenate(expected), local_predictions(replicated_plan, x), rtol=1e-5, atol=1e-5)
    with SplitCoordinator(replicated_plan, alive.addresses, timeout=TIMEOUT) as coordinator:
        coordinator.infer(x[:1])
        alive.workers["dev1"].stop(signal.SIGKILL)
        start = time.monotonic()
        outputs = [coordinator.infer(x[i : i + 1]) for i in range(len(x))]
        assert "dev1" in coordinator.down
    for output, logits in zip(outputs, expected, strict=True):
        assert np.array_equal(output.logits, logits)  # same bundle, same runtime: the same bits
        assert not output.degraded and {c.worker for c in output.calls} <= {"dev0", "dev2"}
    first = outputs[0].record
    failed = [a for a in first.attempts if a.outcome == FAILED]
    assert first.retries >= 1 and failed and failed[0].worker == "dev1"
    assert outputs[0].latency_ms < TIMEOUT * 1e3 and time.monotonic() - start < TIMEOUT * len(x)
    assert all(o.record.retries == 0 for o in outputs[2:])  # marked down: not asked again


def test_a_sigstopped_worker_is_hedged_around_and_the_hedge_wins(replicated_plan, alive, images):
    x, _ = images
    expected = reference(replicated_plan, alive.addresses, x)
    stopped = "dev0"
    mine = next(s.name for s in replicated_plan.shards if s.device == stopped)
    with SplitCoordinator(replicated_plan, alive.addresses, timeout=TIMEOUT, hedge_after="auto") as coordinator:
        for i in range(25):  # the warm-up: auto hedging needs 20 answers per shard
            coordinator.infer(x[i % len(x) : i % len(x) + 1])
        alive.workers[stopped].send(signal.SIGSTOP)
        try:
            outputs = [coordinator.infer(x[i : i + 1]) for i in range(len(x))]
        finally:
            alive.workers[stopped].send(signal.SIGCONT)
        delay = coordinator.latencies.delay_ms(mine, coordinator.hedge)
    first = outputs[0].record
    call = next(c for c in first.calls if c.shard == mine)
    assert call.hedge_won and call.hedges == 1 and call.worker != stopped
    lost = [a for a in first.attempts if a.shard == mine and a.worker == stopped]
    assert [a.outcome for a in lost] == [CANCELLED] and not lost[0].hedge
    assert outputs[0].latency_ms < 1000 + delay  # hedged after ~the p95, not after the 5 s deadline
    for output, logits in zip(outputs, expected, strict=True):
        assert np.array_equal(output.logits, logits)
    assert sum(o.record.hedge_wins for o in outputs) >= 1


def test_a_restarted_worker_rejoins_after_its_health_check_passes(replicated_plan, alive, images):
    x, _ = images
    with SplitCoordinator(replicated_plan, alive.addresses, timeout=TIMEOUT) as coordinator:
        alive.workers["dev2"].stop(signal.SIGKILL)
        assert not coordinator.infer(x[:1]).degraded
        assert "dev2" in coordinator.down
        time.sleep(1.0)  # probed while dead: it must stay down
        assert "dev2" in coordinator.down
        alive.start("dev2")  # same port, same workdir: it restores its shards, then reports SERVING
        deadline = time.monotonic() + 60
        while "dev2" in coordinator.down:
            assert time.monotonic() < deadline, "dev2 never rejoined"
            time.sleep(0.1)
        output = coordinator.infer(x[:1])
        rejoins = list(coordinator.workers.rejoins)
    primary = next(s.name for s in replicated_plan.shards if s.device == "dev2")
    assert next(c.worker for c in output.calls if c.shard == primary) == "dev2"
    assert [r.worker for r in rejoins] == ["dev2"] and rejoins[0].down_for_s > 1.0


def test_a_worker_that_comes_back_empty_is_redeployed_before_it_rejoins(replicated_plan, alive, images):
    x, _ = images
    with SplitCoordinator(replicated_plan, alive.addresses, timeout=TIMEOUT) as coordinator:
        alive.workers["dev0"].stop(signal.SIGKILL)
        coordinator.infer(x[:1])
        alive.start("dev0", fresh=True)  # a new workdir: it holds nothing
        deadline = time.monotonic() + 90
        while "dev0" in coordinator.down:
            assert time.monotonic() < deadline, "dev0 never rejoined"
            time.sleep(0.1)
        health = coordinator.health()["dev0"]
    held = {s.shard: s.digest for s in health.shards}
    assert all(held.get(s.name) == s.digest for s in replicated_plan.shards if "dev0" in s.holders)


def test_probing_is_bounded_and_stops_with_the_coordinator():
    from edgekit.fleet.auth import ClientAuth

    workers = WorkerSet({"ghost": "127.0.0.1:51299"}, ClientAuth(), probe_timeout=0.2)
    workers.mark_down("ghost", "test")
    time.sleep(0.5)
    start = time.monotonic()
    workers.close()
    assert time.monotonic() - start < 1.5 and workers.down == {"ghost": "test"}
    assert workers._prober is not None and not workers._prober.is_alive()


def test_cli_run_report_timeline_and_hedging(replicated_plan, alive, tmp_path):
    import json
    import shutil

    from edgekit.cli.split_report import node_table
    from edgekit.splitter.plan import load_plan, save_plan
    from edgekit.splitter.runreport import build_report
    from tests.helpers.cli import invoke
    from tests.helpers.render import assert_fits, rendered

    root = tmp_path / "plan"
    shutil.copytree(replicated_plan.root, root)
    save_plan(replicated_plan, root)
    assert [s.holders for s in load_plan(root).shards] == [s.holders for s in replicated_plan.shards]
    spec = ",".join(f"{d}={a}" for d, a in alive.addresses.items())
    result = invoke("infer-split", str(root), "--workers", spec, "--eval", "digits", "--limit", "30", "--hedge-after",
                    "1", "--report", str(tmp_path / "run.json"), "--timeline", str(tmp_path / "t.png"))  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["requests"] == 30 and report["answered"] == 30 and len(report["records"]) == 30
    assert report["hedge_policy"] == "1 ms" and report["accuracy"] is not None
    assert {n["worker"] for n in report["nodes"]} == set(alive.addresses)
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert sum(n["answered"] for n in report["nodes"]) == 30 * len(replicated_plan.shards)
    for node in report["nodes"]:  # every worker's energy was asked for: joules where it has a meter, else why not
        assert node["energy"]["joules"] is not None or node["energy"]["reason"], node
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with SplitCoordinator(replicated_plan, alive.addresses, timeout=TIMEOUT, hedge_after=1) as coordinator:
        x = np.zeros((1, 1, 8, 8), np.float32)
        records = [coordinator.infer(x).record for _ in range(5)]
    assert sum(r.hedges for r in records) >= 1  # 1 ms is shorter than any round trip here
    assert_fits(rendered(node_table(build_report(records, 1.0, workers=alive.addresses))), whole=("dev0", "dev2"))
    assert invoke("infer-split", str(root), "--workers", spec, "-i", "x.npy", "--report", "r.json").exit_code == 2
