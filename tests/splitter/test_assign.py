"""Assignment respects memory, places every shard once, and stays within 2x of the best makespan."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekit.errors import ConfigError
from edgekit.splitter.assign import ShardCost, assign, shard_ms
from edgekit.splitter.devices import DeviceSpec

shard_lists = st.lists(
    st.builds(
        ShardCost,
        name=st.uuids().map(lambda u: u.hex[:8]),
        flops=st.integers(1, 10**9),
        memory_bytes=st.integers(1, 100).map(lambda k: k * 10_000),  # MB messages have 0.01 MB steps
        transfer_bytes=st.integers(0, 10**5),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda s: s.name,
)
device_lists = st.lists(
    st.builds(
        DeviceSpec,
        name=st.uuids().map(lambda u: u.hex[:8]),
        address=st.none(),
        memory_bytes=st.integers(1, 300).map(lambda k: k * 10_000),
        gflops=st.floats(0.5, 200),
        format=st.just("onnx"),
        link_mbps=st.none() | st.floats(1, 1000),
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda d: d.name,
)


@settings(max_examples=300, deadline=None)
@given(shards=shard_lists, devices=device_lists)
def test_assignment_respects_memory_or_names_the_shard_that_does_not_fit(shards, devices):
    try:
        result = assign(shards, devices)
    except ConfigError as exc:
        match = re.search(r"sub-model (\w+) needs ([0-9.]+) MB .* the most is ([0-9.]+) MB on (\w+)", str(exc))
        assert match, str(exc)
        named = next(s for s in shards if s.name == match.group(1))
        assert f"{named.memory_bytes / 1e6:.2f}" == match.group(2)  # the message names that shard's own need
        assert float(match.group(2)) > float(match.group(3))  # it really did not fit where there was most room
        # if everything fitted on one device together, that device would always have had room
        assert sum(s.memory_bytes for s in shards) > max(d.memory_bytes for d in devices)
        return
    assert sorted(result.placement) == sorted(s.name for s in shards)
    for d in devices:
        placed = [s for s in shards if result.placement[s.name] == d.name]
        assert sum(s.memory_bytes for s in placed) <= d.memory_bytes
        assert result.memory_used[d.name] == sum(s.memory_bytes for s in placed)
        assert result.finish_ms[d.name] == pytest.approx(sum(shard_ms(s, d) for s in placed))


@settings(max_examples=200, deadline=None)
@given(shards=shard_lists, devices=device_lists)
def test_assignment_always_succeeds_when_everything_fits_on_every_device(shards, devices):
    roomy = [DeviceSpec(d.name, None, 10**9, d.gflops, "onnx", d.link_mbps) for d in devices]
    assert len(assign(shards, roomy).placement) == len(shards)


@settings(max_examples=150, deadline=None)
@given(shards=shard_lists.filter(lambda s: len(s) <= 6), devices=device_lists.filter(lambda d: len(d) <= 3))
def test_makespan_within_twice_the_optimum(shards, devices):
    roomy = [DeviceSpec(d.name, None, 10**9, d.gflops, "onnx", d.link_mbps) for d in devices]
    greedy = assign(shards, roomy).critical_ms
    best = min(
        max(
            sum(shard_ms(s, roomy[i]) for s, i in zip(shards, choice, strict=True) if i == k) for k in range(len(roomy))
        )
        for choice in itertools.product(range(len(roomy)), repeat=len(shards))
    )
    assert greedy <= 2 * best + 1e-9


def test_a_shard_too_big_for_every_device_is_named_with_the_shortfall():
    devices = [DeviceSpec("pi-a", None, 1_000_000, 10, "onnx"), DeviceSpec("pi-b", None, 2_000_000, 10, "onnx")]
    with pytest.raises(ConfigError, match=r"sub-model big needs 3\.00 MB .* 2\.00 MB on pi-b \(short by 1\.00 MB\)"):
        assign([ShardCost("big", 10, 3_000_000)], devices)


def test_faster_device_takes_more_work():
    devices = [DeviceSpec("slow", None, 10**9, 1.0, "onnx"), DeviceSpec("fast", None, 10**9, 4.0, "onnx")]
    shards = [ShardCost(f"s{i}", 10**9, 1) for i in range(5)]
    result = assign(shards, devices)
    on_fast = sum(1 for d in result.placement.values() if d == "fast")
    assert on_fast == 4  # 4 on the 4x faster device finish at 1000 ms, like 1 on the slow one
    assert result.critical_ms == pytest.approx(1000.0)
