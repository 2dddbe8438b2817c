"""Rendering a split run's report (``infer-split --report / --timeline``) and a plan's replicas, at 80 columns."""

from __future__ import annotations

from edgekit.cli import render


def run_summary(report) -> str:
    latency = report.latency_ms
    parts = [f"{report.answered}/{report.requests} answered"]
    if report.accuracy is not None:
        parts.append(f"accuracy {report.accuracy:.2%}")
    if latency:
        parts.append(f"end to end p50 {latency.p50:.2f} / p90 {latency.p90:.2f} / p99 {latency.p99:.2f} ms")
    parts.append(f"{report.throughput_rps:.1f} requests/s")
    parts.append(f"{report.retries} retries, {report.hedges} hedges ({report.hedge_wins} won; {report.hedge_policy})")
    if report.degraded:
        parts.append(f"{report.degraded} degraded")
    if report.errors:
        parts.append(f"{report.errors} errors")
    parts.append(f"{render.size(report.bytes_sent)} out, {render.size(report.bytes_received)} in")
    return "; ".join(parts)


def node_table(report, title: str = "per worker"):
    """Per worker: answered / failed / cancelled calls, hedges it received and won, round trip and compute, and the
    energy its meter measured over the run ("-" where it has none)."""
    columns = {"worker": "left", "answered": "right", "failed": "right", "hedged (won)": "right",
               "rtt p50 ms": "right", "rtt p99 ms": "right", "compute p50 ms": "right",
               "KiB out / in": "right", "energy J (meter)": "right", "mean W": "right"}  # fmt: skip
    table = render.table(title, columns, keep=("worker",))
    for n in report.nodes:
        rtt, compute = n.round_trip_ms, n.compute_ms
        table.add_row(
            render.text(n.worker), str(n.answered), str(n.failed), f"{n.hedges_sent} ({n.hedge_wins})",
            f"{rtt.p50:.2f}" if rtt else "-", f"{rtt.p99:.2f}" if rtt else "-",
            f"{compute.p50:.2f}" if compute else "-", f"{n.bytes_sent / 1024:.0f} / {n.bytes_received / 1024:.0f}",
            *energy_cells(n.energy),
        )  # fmt: skip
    return table


def energy_cells(energy) -> tuple[str, str]:
    if energy is None or energy.joules is None:
        return "-", "-"
    watts = energy.mean_watts
    return f"{energy.joules:.3g} ({render.text(energy.meter)})", f"{watts:.3g}" if watts is not None else "-"


def replica_lines(plan) -> list[str]:
    """Where each shard's copies are, and which could not get as many as asked (with why)."""
    section = plan.report.get("replicas") or {}
    if section.get("copies", 1) <= 1:
        return []
    lines = [f"replicas ({section['copies']} copies asked per shard): "
             + "; ".join(f"{s.name} on {', '.join(s.holders)}" for s in plan.shards)]  # fmt: skip
    for shard, why in sorted(section.get("short", {}).items()):
        lines.append(f"[yellow]{render.text(shard)} not fully replicated[/yellow]: {render.text(why)}")
    return lines
