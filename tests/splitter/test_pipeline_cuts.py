"""The pipeline's cut points (dynamic programming over per-block times and link rates) and auto's choice."""

from __future__ import annotations

import pytest

from edgekit.splitter.auto import Estimate, choose, edvit_estimate, pipeline_estimate
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.pipeline_cuts import ChainCost, plan_cuts


def _cost(blocks=(1.0,) * 8, activation=10_000, hop=0.0) -> ChainCost:
    return ChainCost(embed_ms=0.0, block_ms=tuple(blocks), head_ms=0.0, input_bytes=1000,
                     activation_bytes=activation, output_bytes=40, host_gflops=10.0, hop_ms=hop)  # fmt: skip


def _devices(n, gflops=10.0, mbps=None):
    gflops = gflops if isinstance(gflops, (list, tuple)) else [gflops] * n
    return [DeviceSpec(f"d{i}", None, 10**9, g, "onnx", link_mbps=mbps) for i, g in enumerate(gflops)]


def test_equal_devices_get_equal_runs_of_blocks():
    cuts = plan_cuts(_cost(), _devices(4))
    assert [(s.start, s.stop) for s in cuts.stages] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert cuts.period_ms == pytest.approx(2.0) and cuts.latency_ms == pytest.approx(8.0)


def test_a_device_twice_as_fast_gets_twice_the_blocks():
    cuts = plan_cuts(_cost(blocks=(1.0,) * 6), _devices(2, gflops=[20.0, 10.0]))
    assert [(s.device, s.stop - s.start) for s in cuts.stages] == [("d0", 4), ("d1", 2)]
    assert cuts.period_ms == pytest.approx(2.0)


def test_a_slow_link_keeps_the_model_on_fewer_devices():
    # 10 kB between blocks over 1 Mbit/s is 80 ms: more than the whole model on one device (8 ms)
    cuts = plan_cuts(_cost(), _devices(4, mbps=1.0))
    assert len(cuts.stages) == 1
    fast = plan_cuts(_cost(), _devices(4, mbps=1000.0))  # 0.08 ms a transfer
    assert len(fast.stages) == 4


def test_more_devices_than_blocks_uses_at_most_one_stage_a_block():
    cuts = plan_cuts(_cost(blocks=(1.0, 1.0, 1.0)), _devices(10))
    assert len(cuts.stages) == 3 and all(s.stop - s.start == 1 for s in cuts.stages)


def test_every_stage_pays_its_hop_in_its_period_and_in_the_latency():
    # 5 ms a hop on 1 ms blocks: two stages still shorten the period (6 ms vs 7 ms), at 12 ms a request
    cuts = plan_cuts(_cost(blocks=(1.0, 1.0), hop=5.0), _devices(2))
    assert cuts.period_ms == pytest.approx(6.0) and cuts.latency_ms == pytest.approx(12.0)
    alone = plan_cuts(_cost(blocks=(1.0, 1.0), hop=5.0), _devices(2), max_stages=1)
    assert alone.period_ms == pytest.approx(7.0) and alone.latency_ms == pytest.approx(7.0)


def test_auto_chooses_the_lower_latency_and_says_why():
    cost, devices = _cost(), _devices(4, mbps=100.0)
    edvit, pipeline = edvit_estimate(cost, devices, 256), pipeline_estimate(cost, devices)
    assert edvit.latency_ms < pipeline.latency_ms  # every device on every input: about 1/N of the model each
    chosen, why = choose([edvit, pipeline])
    assert chosen == "edvit" and "lowest estimated latency" in why and "pipeline" in why
    refused = Estimate("edvit", 0.1, 1e4, refused="more devices than classes")
    chosen, why = choose([refused, pipeline])
    assert chosen == "pipeline" and "edvit refused: more devices than classes" in why


def test_a_link_bound_pipeline_still_cuts_the_compute_evenly():
    # 10 kB over 20 Mbit/s is 4 ms a transfer, above 2-4 blocks of 1 ms: those cuts share period and latency
    cuts = plan_cuts(_cost(blocks=(1.0,) * 6), _devices(2, mbps=20.0))
    assert cuts.period_ms == pytest.approx(4.0)
    assert [(s.start, s.stop) for s in cuts.stages] == [(0, 3), (3, 6)]
