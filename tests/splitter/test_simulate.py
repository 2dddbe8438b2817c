"""The fleet simulation: seeded, faithful to its fixture, and its policies doing what they claim (no processes)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import ConfigError
from edgekit.splitter.simulation import (
    FailureModel,
    Kill,
    MeasuredCosts,
    Policy,
    Scenario,
    Simulation,
    SlowDevices,
    place,
)

FIXTURE = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "shard_latency.json"
NO_REPLICAS, FAILOVER, HEDGED = Policy("none"), Policy("K=2", 2), Policy("K=2 hedged", 2, "auto")


@pytest.fixture(scope="module")
def measured() -> MeasuredCosts:
    return MeasuredCosts.load(FIXTURE)


def small(**kw) -> Scenario:
    """A quick fleet: 20 devices, 5 plans of 4 shards, 1,500 requests at 100/s (15 s simulated)."""
    return Scenario(**{"devices": 20, "plans": 5, "requests": 1500, "rate": 100.0, **kw})


def test_the_fixture_names_its_cpu_and_holds_paired_samples(measured):
    assert measured.cpu and measured.cpu != "none (constant)"
    assert len(measured.shards) == 3
    for s in measured.shards:
        assert len(s.compute_ms) == len(s.round_trip_ms) >= 100
        assert (s.round_trip_ms >= s.compute_ms).mean() > 0.99  # a round trip contains the compute


def test_resampling_reproduces_the_fixtures_medians(measured):
    rng = np.random.default_rng(0)
    for kind, shard in enumerate(measured.shards):
        draws = np.array([measured.call_cost_ms(rng, kind) for _ in range(5000)])
        assert np.median(draws[:, 0]) == pytest.approx(np.median(shard.compute_ms), rel=0.05)
        assert np.median(draws.sum(1)) == pytest.approx(np.median(shard.round_trip_ms), rel=0.05)
    cpu = [measured.cpu_per_call_ms(rng) * len(measured.shards) for _ in range(5000)]
    assert np.median(cpu) == pytest.approx(np.median(measured.coordinator_cpu_ms), rel=0.05)


def test_the_same_seed_gives_the_same_run_and_another_seed_another(measured):
    scenario = small(requests=1000, slow=SlowDevices(0.1), failures=FailureModel(mtbf_s=60, reboot_s=5))
    a, b = (Simulation(measured, scenario, HEDGED, seed=3).run() for _ in range(2))
    c = Simulation(measured, scenario, HEDGED, seed=4).run()
    assert np.array_equal(a.latency_ms, b.latency_ms)
    assert (a.lost, a.late, a.calls, a.hedges, a.hedge_wins, a.crashes) == (
        b.lost, b.late, b.calls, b.hedges, b.hedge_wins, b.crashes)  # fmt: skip
    assert a.crashes > 0 and not np.array_equal(a.latency_ms, c.latency_ms)


def test_without_stragglers_or_failures_hedging_changes_nothing():
    # Every call costs the same and frames come at a fixed rate (a camera): no call outlasts the p95.
    costs = MeasuredCosts.constant(compute_ms=0.5, network_ms=1.0, cpu_ms=0.6)
    scenario = small(arrivals="periodic")
    plain, hedged = (Simulation(costs, scenario, p, seed=1).run() for p in (FAILOVER, HEDGED))
    assert hedged.hedges == 0 and hedged.answered == plain.answered == scenario.requests
    assert np.array_equal(plain.latency_ms, hedged.latency_ms)


def test_on_measured_costs_without_faults_hedging_only_trims_the_tail(measured):
    plain, hedged = (Simulation(measured, small(), p, seed=2).run() for p in (FAILOVER, HEDGED))
    assert plain.answered == hedged.answered == 1500
    assert hedged.percentile(50) == pytest.approx(plain.percentile(50), rel=0.05)
    assert 0 < hedged.hedges < 0.12 * hedged.calls  # the measured tail past p95, not every call


def test_hedging_cuts_the_tail_that_slow_devices_add(measured):
    scenario = small(slow=SlowDevices(0.1, factor=4.0))  # 2 of the 20 devices
    plain, hedged = (Simulation(measured, scenario, p, seed=5).run() for p in (FAILOVER, HEDGED))
    assert hedged.hedge_wins > 0
    assert hedged.percentile(99) < 0.9 * plain.percentile(99) and hedged.gave_up == plain.gave_up == 0


@pytest.mark.parametrize("silent", [False, True], ids=["reset", "silent"])
def test_a_killed_device_loses_requests_without_replicas_and_none_with_two(measured, silent):
    lost = {}
    for policy in (NO_REPLICAS, FAILOVER):
        sim = Simulation(measured, small(kills=(Kill(0, 5.0, silent),)), policy, seed=0)
        victim_shards = sim.placement.shards_on(0)
        result = sim.run()
        lost[policy.name] = result.lost
        assert victim_shards and result.answered + result.lost + result.late + result.gave_up == 1500
    assert lost["none"] > 100  # its plan's requests after 5 s of 15: roughly 1500 / 5 plans * 2/3
    assert lost["K=2"] == 0


def test_with_both_replicas_of_a_shard_killed_requests_are_lost(measured):
    sim = Simulation(measured, small(), FAILOVER, seed=0)
    a, b = sim.placement.replicas[(0, 0)]
    result = Simulation(measured, small(kills=(Kill(a, 5.0), Kill(b, 5.0, silent=True))), FAILOVER, seed=0).run()
    assert result.lost > 100 and result.answered > 1000  # the other plans still answer


def test_the_coordinator_queue_shows_when_its_cpu_is_the_bottleneck():
    costs = MeasuredCosts.constant(compute_ms=0.2, network_ms=1.0, cpu_ms=3.0)  # 4 ms of CPU per 4-shard request
    light, heavy = (Simulation(costs, small(rate=r), FAILOVER, seed=0).run() for r in (100.0, 240.0))
    assert light.coordinator_busy == pytest.approx(0.4, abs=0.05)
    assert heavy.coordinator_busy > 0.9 and heavy.late > 0  # past 250/s the queue only grows
    assert heavy.percentile(50) > 3 * light.percentile(50)


def test_placement_spreads_replicas_and_says_which_shards_fall_short():
    rng = np.random.default_rng(0)
    spread = place(plans=25, shards=4, devices=100, replicas=3, slots=4, rng=rng)
    assert all(len(set(d)) == 3 for d in spread.replicas.values()) and not spread.short
    assert spread.load().max() - spread.load().min() <= 1
    crowded = place(plans=1, shards=2, devices=2, replicas=3, slots=4, rng=rng)
    assert [why for _, why in crowded.short] == ["2 of 3 replicas: fewer devices than replicas"] * 2
    with pytest.raises(ConfigError, match="no device has a free slot"):
        place(plans=3, shards=2, devices=1, replicas=1, slots=4, rng=rng)


def test_a_file_that_is_not_a_measurement_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"cpu": "x"}')
    with pytest.raises(ConfigError, match="not a shard latency record"):
        MeasuredCosts.load(path)


def test_placement_across_failure_domains_keeps_a_shards_replicas_apart():
    domains = [d // 10 for d in range(100)]
    blind = place(plans=25, shards=4, devices=100, replicas=3, slots=4, rng=np.random.default_rng(0))
    spread = place(plans=25, shards=4, devices=100, replicas=3, slots=4, rng=np.random.default_rng(0),
                   domains=domains)  # fmt: skip
    assert all(len({domains[d] for d in devices}) == 3 for devices in spread.replicas.values())
    assert any(len({domains[d] for d in devices}) < 3 for devices in blind.replicas.values())


def test_a_switch_outage_loses_requests_only_when_replicas_share_its_domain(measured):
    scenario = small(domains=4)  # 4 switches of 5 devices
    blind = Simulation(measured, scenario, Policy("blind", 2, spread_domains=False), seed=0)
    shared = [scenario.domain_of(a) for a, b in blind.placement.replicas.values()
              if scenario.domain_of(a) == scenario.domain_of(b)]  # fmt: skip
    assert shared, "the domain-blind placement should put some shard's replicas behind one switch"
    switch = [Kill(d, 5.0, silent=True) for d in range(20) if scenario.domain_of(d) == shared[0]]
    lost = {}
    for policy in (Policy("blind", 2, spread_domains=False), FAILOVER):
        lost[policy.name] = Simulation(measured, replace(scenario, kills=tuple(switch)), policy, seed=0).run().lost
    assert lost["blind"] > 100 and lost["K=2"] == 0
