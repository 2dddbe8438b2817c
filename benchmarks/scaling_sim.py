"""Replica policies at N = 100 devices, simulated from shard calls measured on real workers (issue #16, item 6).

The costs are resampled from ``benchmarks/data/shard_latency.json`` (``benchmarks/shard_latency.py``: a tiny 3-shard
plan on loopback worker processes, the CPU named in the file). Everything else is an assumption stated in the table
titles: the fleet (100 devices, 25 plans of 4 shards, 4 shard slots per device), Poisson load, 5% of devices slow
(compute x4 x a Pareto(1.5) draw per call), crashes with an *accelerated* MTBF (10 minutes instead of days, so that
a minute of traffic meets about a dozen crashes), a 30 s reboot plus a measured worker restart, and half the crashes
silent (power lost: calls hang until the 25 ms attempt timeout) and half loud (a reset). Each policy meets the same
arrivals, stragglers and crashes for a given seed; the spread is over seeds.

Table 1: the policies, with a coordinator that has headroom (2 cores, about a quarter busy: with one core at half
load its own queue is most of the p99, which no replica policy can shorten). Table 2: the coordinator's CPU as the
load grows (its per-call cost is measured), where the coordinator, not the devices, decides the latency. Table 3:
correlated failures alone (10 switches of 10 devices, each failing for a minute), where placement across switches
is what keeps a shard alive. A
calibration line compares the simulated and measured end-to-end median for the measured plan itself (1 plan, 3
shards, 3 devices, no faults).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgekit.splitter.simulation import (
    FailureModel,
    MeasuredCosts,
    Policy,
    Scenario,
    SimResult,
    Simulation,
    SlowDevices,
)

FIXTURE = Path(__file__).with_name("data") / "shard_latency.json"
POLICIES = (
    Policy("no replicas"),
    Policy("K=2, failover", 2),
    Policy("K=2 + hedge at p95", 2, "auto"),
    Policy("K=3, failover", 3),
    Policy("K=3 + hedge at p95", 3, "auto"),
)
LOADED = POLICIES[2]


@dataclass(frozen=True)
class Report:
    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]

    def table(self) -> Table:
        table = Table(title=escape(self.title))
        for i, header in enumerate(self.headers):
            table.add_column(header, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*(escape(cell) for cell in row))
        return table

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in self.rows)])


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """median [min-max] over seeds"""
    v = np.asarray(values, float)
    return f"{fmt.format(np.median(v))} [{fmt.format(v.min())}-{fmt.format(v.max())}]"


def run(costs: MeasuredCosts, scenario: Scenario, policy: Policy, seeds: range) -> list[SimResult]:
    return [Simulation(costs, scenario, policy, seed).run() for seed in seeds]


def row_json(results: list[SimResult], **extra) -> dict:
    return {**extra, "policy": results[0].policy, "seeds": [r.seed for r in results],
            "p50_ms": [r.percentile(50) for r in results], "p99_ms": [r.percentile(99) for r in results],
            **{k: [getattr(r, k) for r in results] for k in ("answered", "lost", "late", "gave_up", "calls",
                                                             "retries", "hedges", "hedge_wins", "crashes",
                                                             "coordinator_busy", "under_replicated")}}  # fmt: skip


def policy_report(costs: MeasuredCosts, scenario: Scenario, seeds: range, rows: list) -> Report:
    f = scenario.failures
    title = (
        f"N={scenario.devices} devices, {scenario.plans} plans x {scenario.shards} shards, {scenario.rate:g} req/s, "
        f"{scenario.coordinator_cores} coordinator core(s), {scenario.requests:,} requests a run, seeds "
        f"{seeds.start}-{seeds.stop - 1}; deadline {scenario.deadline_ms:g} ms, attempt timeout "
        f"{scenario.attempt_timeout_ms:g} ms; {scenario.slow.fraction:.0%} slow devices; MTBF {f.mtbf_s:g} s, reboot "
        f"{f.reboot_s:g} s (down {f.down_fraction:.1%} of the time); costs measured on {costs.cpu} (loaded). "
        "Cells: median [min-max] over seeds"
    )  # fmt: skip
    headers = ("policy", "p50 ms", "p99 ms", "lost", "lost, mean", "late", "gave up", "calls / request", "retries",
               "hedges (won)", "crashes", "coordinator busy")  # fmt: skip
    out = []
    for policy in POLICIES:
        results = run(costs, scenario, policy, seeds)
        rows.append(row_json(results, table="policies"))
        out.append((
            policy.name, spread([r.percentile(50) for r in results]), spread([r.percentile(99) for r in results]),
            spread([r.lost for r in results], "{:.0f}"), f"{np.mean([r.lost for r in results]):.0f}",
            spread([r.late for r in results], "{:.0f}"), spread([r.gave_up for r in results], "{:.0f}"),
            spread([r.calls / scenario.requests for r in results]), spread([r.retries for r in results], "{:.0f}"),
            f"{np.median([r.hedges for r in results]):.0f} ({np.median([r.hedge_wins for r in results]):.0f})",
            spread([r.crashes for r in results], "{:.0f}"),
            spread([100 * r.coordinator_busy for r in results], "{:.0f}%"),
        ))  # fmt: skip
    return Report(title, headers, out)


def coordinator_report(costs: MeasuredCosts, scenario: Scenario, seeds: range, loads: list[tuple[float, int]],
                       rows: list) -> Report:  # fmt: skip
    per_call = float(np.median(costs.coordinator_cpu_ms)) / len(costs.shards)
    title = (
        f"The coordinator as a queue: policy '{LOADED.name}', N={scenario.devices}, faults as above, seeds "
        f"{seeds.start}-{seeds.stop - 1}; measured coordinator CPU {per_call:.2f} ms per shard call (median; send + "
        f"receive + fusion share), {scenario.shards} shard calls per request. Cells: median [min-max] over seeds"
    )  # fmt: skip
    headers = ("req/s", "cores", "coordinator busy", "p50 ms", "p99 ms", "answered", "late", "lost")
    out = []
    for rate, cores in loads:
        s = replace(scenario, rate=rate, coordinator_cores=cores)
        results = run(costs, s, LOADED, seeds)
        rows.append(row_json(results, table="coordinator", rate=rate, cores=cores))
        out.append((
            f"{rate:g}", str(cores), spread([100 * r.coordinator_busy for r in results], "{:.0f}%"),
            spread([r.percentile(50) for r in results]), spread([r.percentile(99) for r in results]),
            spread([100 * r.answered / s.requests for r in results], "{:.1f}%"),
            spread([r.late for r in results], "{:.0f}"), spread([r.lost for r in results], "{:.0f}"),
        ))  # fmt: skip
    return Report(title, headers, out)


DOMAIN_POLICIES = (
    Policy("no replicas"),
    Policy("K=2, domain-blind", 2, spread_domains=False),
    Policy("K=2, across domains", 2),
    Policy("K=3, across domains", 3),
)


def domain_report(costs: MeasuredCosts, scenario: Scenario, seeds: range, rows: list) -> Report:
    f = scenario.domain_failures
    title = (
        f"Correlated failures: {scenario.devices} devices behind {scenario.domains} switches; a switch fails with MTBF "
        f"{f.mtbf_s:g} s for {f.reboot_s:g} s (silently: its devices vanish; down {f.down_fraction:.1%} of the time), "
        f"no device crashes, stragglers as above; failover, no hedging; seeds {seeds.start}-{seeds.stop - 1}. "
        "Cells: median [min-max]"
    )  # fmt: skip
    headers = ("placement", "p50 ms", "p99 ms", "lost", "lost, mean", "gave up", "device outages")
    out = []
    for policy in DOMAIN_POLICIES:
        results = run(costs, scenario, policy, seeds)
        rows.append(row_json(results, table="domains"))
        out.append((
            policy.name, spread([r.percentile(50) for r in results]), spread([r.percentile(99) for r in results]),
            spread([r.lost for r in results], "{:.0f}"), f"{np.mean([r.lost for r in results]):.0f}",
            spread([r.gave_up for r in results], "{:.0f}"), spread([r.crashes for r in results], "{:.0f}"),
        ))  # fmt: skip
    return Report(title, headers, out)


def calibration(costs: MeasuredCosts) -> str:
    """The measured plan itself, simulated: how far the model's end-to-end median is from the measured one."""
    scenario = Scenario(devices=3, plans=1, shards=len(costs.shards), slots=1, rate=50.0, requests=2000,
                        arrivals="periodic")  # fmt: skip
    simulated = Simulation(costs, scenario, Policy("measured plan"), 0).run().percentile(50)
    measured = float(np.median(costs.end_to_end_ms))
    return (f"calibration: the measured 3-shard plan simulated (no faults, one request at a time) has an end-to-end "
            f"median of {simulated:.2f} ms; measured {measured:.2f} ms ({simulated / measured - 1:+.0%}; the model "
            "adds the coordinator's CPU to the round trips; the real one overlaps part of it)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--costs", type=Path, default=FIXTURE, help="a JSON from benchmarks/shard_latency.py")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--mtbf", type=float, default=600.0, help="seconds (accelerated; real devices: days)")
    parser.add_argument("--cores", type=int, default=2, help="coordinator cores for table 1 (2: 25%% busy at 150/s)")
    parser.add_argument("--switch-mtbf", type=float, default=1200.0, help="seconds, for table 3 (accelerated)")
    parser.add_argument("--loads", default="100:1,200:1,250:1,300:1,300:2,500:2", help="req/s:cores for table 2")
    parser.add_argument("--json", type=Path, help="write every run's numbers as JSON")
    parser.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    args = parser.parse_args()
    console = Console(width=200)
    costs = MeasuredCosts.load(args.costs)
    scenario = Scenario(rate=args.rate, requests=args.requests, coordinator_cores=args.cores,
                        slow=SlowDevices(0.05, factor=4.0, tail=1.5),
                        failures=FailureModel(mtbf_s=args.mtbf, reboot_s=30.0, silent=0.5))  # fmt: skip
    seeds = range(args.seeds)
    rows: list = []
    console.print(calibration(costs))
    loads = [(float(r), int(c)) for r, c in (item.split(":") for item in args.loads.split(","))]
    reports = [policy_report(costs, scenario, seeds, rows)]
    console.print(reports[0].table())
    reports.append(coordinator_report(costs, replace(scenario, coordinator_cores=1), range(min(3, args.seeds)),
                                      loads, rows))  # fmt: skip
    console.print(reports[1].table())
    switches = replace(scenario, domains=10, failures=FailureModel(),
                       domain_failures=FailureModel(mtbf_s=args.switch_mtbf, reboot_s=60.0))  # fmt: skip
    reports.append(domain_report(costs, switches, seeds, rows))
    console.print(reports[2].table())
    if args.markdown:
        print("\n\n".join(r.markdown() for r in reports))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
