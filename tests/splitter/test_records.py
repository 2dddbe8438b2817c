"""The hedge policy, the latency window it reads and the run report, on records made by hand (no workers)."""

from __future__ import annotations

import pytest

from edgekit.errors import ConfigError
from edgekit.splitter.hedging import FLOOR_MS, WARMUP, HedgePolicy, ShardLatencies
from edgekit.splitter.records import ANSWERED, CANCELLED, FAILED, Attempt, RequestRecord, ShardCall
from edgekit.splitter.runreport import build_report


def test_hedge_after_parses_auto_milliseconds_and_off():
    assert HedgePolicy.parse(None) is None and HedgePolicy.parse("off") is None
    assert HedgePolicy.parse("auto").auto and HedgePolicy.parse("40").after_ms == 40.0
    assert HedgePolicy.parse("2.5ms").after_ms == 2.5 and HedgePolicy.parse(7).after_ms == 7.0
    for bad in ("soon", "-3", "0"):
        with pytest.raises(ConfigError, match="--hedge-after"):
            HedgePolicy.parse(bad)


def test_auto_delay_waits_for_the_warm_up_then_follows_the_p95_above_a_floor():
    window = ShardLatencies(window=100)
    auto = HedgePolicy.parse("auto")
    for _ in range(WARMUP - 1):
        window.add("s", 1.0)
    assert window.delay_ms("s", auto) is None  # not enough answers yet
    window.add("s", 1.0)
    assert window.delay_ms("s", auto) == FLOOR_MS  # fast answers: the floor
    for ms in range(100):
        window.add("s", float(ms))  # the window keeps the last 100: 0..99
    assert window.delay_ms("s", auto) == pytest.approx(94.05)
    assert window.delay_ms("other", auto) is None
    assert window.delay_ms("s", HedgePolicy.parse("12")) == 12.0 and window.delay_ms("s", None) is None


def _record(i, worker, rtt, hedged=False, error="", prediction=0):
    calls = () if error else (ShardCall("shard0", worker, rtt / 2, rtt, 300, 200, 0, int(hedged), hedged),)
    attempts = [Attempt("shard0", worker, i, i + rtt / 1e3, FAILED if error else ANSWERED, hedged, error)]
    if hedged:
        attempts.insert(0, Attempt("shard0", "slow", i, i + rtt / 1e3, CANCELLED, False))
    return RequestRecord(i, float(i), rtt, calls, tuple(attempts), error=error,
                         prediction=None if error else prediction)  # fmt: skip


def test_run_report_counts_hedges_errors_and_per_worker_percentiles():
    records = [_record(i, "a", 10.0 + i) for i in range(10)]
    records += [_record(10, "b", 5.0, hedged=True), _record(11, "a", 1.0, error="worker a: down")]
    report = build_report(records, 2.0, labels=[0] * 11 + [0], workers={"a": "h:1", "b": "h:2", "slow": "h:3"})
    assert (report.requests, report.answered, report.errors) == (12, 11, 1)
    assert report.accuracy == pytest.approx(11 / 12)  # the error counts as wrong
    assert report.hedges == 1 and report.hedge_wins == 1 and report.retries == 1
    assert report.throughput_rps == pytest.approx(5.5)
    assert report.error_messages == {"worker a: down": 1}
    nodes = {n.worker: n for n in report.nodes}
    assert nodes["a"].answered == 10 and nodes["a"].failed == 1 and nodes["a"].round_trip_ms.p50 == pytest.approx(14.5)
    assert nodes["b"].hedges_sent == 1 and nodes["b"].hedge_wins == 1
    assert nodes["slow"].cancelled == 1 and nodes["slow"].round_trip_ms is None
    data = report.to_json()
    assert len(data["records"]) == 12 and data["nodes"][0]["round_trip_ms"]["count"] == 10
