"""Token merging (#20): the one-hot matching against a gather-based reference, r = 0 as the plain model, the token
schedule, rejected rates, multi-rate bundles verified in every format, and the graph a latency budget picks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from edgekit.errors import UnsupportedOptionError
from edgekit.models import create_model
from edgekit.models.token_merge import BipartiteMerge, max_rate
from edgekit.models.token_merge_models import merging_module, parse_rates, token_merge_spec
from tests.conftest import TINY_CONFIGS

RATES = (0, 2, 5)  # the tiny vit_tiny has 16 patches and 2 blocks: at most 5 per block


def _reference_merge(x, size, keys, r, protected, heads, dim):
    """ToMe as the reference code writes it (sort, gather, per-destination sums), kept tokens in their order."""
    batch, n, _ = x.shape
    metric = keys.reshape(batch, n, heads, dim).sum(2)
    metric = metric / metric.norm(dim=-1, keepdim=True)
    tokens, sizes = [], []
    for i in range(batch):
        rest, srest, mrest = x[i, protected:], size[i, protected:], metric[i, protected:]
        best, dest = (mrest[0::2] @ mrest[1::2].T).max(-1)
        merged = set(torch.argsort(-best, stable=True)[:r].tolist())
        kept = [k for k in range(len(best)) if k not in merged]
        xa, xb, sa, sb = rest[0::2], rest[1::2], srest[0::2], srest[1::2]
        total, count = (xb * sb).clone(), sb.clone()
        for k in merged:
            total[dest[k]] += xa[k] * sa[k]
            count[dest[k]] += sa[k]
        tokens.append(torch.cat([x[i, :protected], xa[kept], total / count]))
        sizes.append(torch.cat([size[i, :protected], sa[kept], count]))
    return torch.stack(tokens), torch.stack(sizes)


@pytest.mark.parametrize(("tokens", "r", "protected"), [(17, 3, 1), (16, 4, 0), (15, 6, 0), (20, 2, 1)])
def test_one_hot_matching_equals_the_gather_reference(tokens, r, protected):
    torch.manual_seed(tokens)
    heads, dim = 2, 4
    x, keys = torch.randn(3, tokens, 6), torch.randn(3, tokens, heads * dim)
    size = torch.randint(1, 4, (3, tokens, 1)).float()
    merge = BipartiteMerge(tokens, r, protected, heads, dim)
    matching = merge.match(keys)
    merged, merged_size = merge.merge(x, size, matching)
    expected, expected_size = _reference_merge(x, size, keys, r, protected, heads, dim)
    assert merged.shape == (3, tokens - r, 6)
    torch.testing.assert_close(merged, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(merged_size, expected_size)
    assert torch.equal(merged_size.sum((1, 2)), size.sum((1, 2)))  # every patch still counted once
    if protected:  # the class token is never merged: passed through unchanged, size 1
        assert torch.equal(merged[:, 0], x[:, 0]) and torch.equal(merged_size[:, 0], size[:, 0])
    # unmerging hands a merged token the output of the token it went into, a kept one its own
    restored = merge.unmerge(merged, matching)
    assert restored.shape == x.shape
    for i, position in enumerate(range(protected, tokens, 2)):
        for b in range(3):
            if matching.dest[b, i].sum() == 1:
                into = protected + 2 * int(matching.dest[b, i].argmax()) + 1
                assert torch.equal(restored[b, position], restored[b, into])
            else:
                assert torch.equal(restored[b, position], x[b, position])


def test_ties_pick_the_first_maximum_and_distinct_ranks():
    merge = BipartiteMerge(8, 2, 0, 1, 2)
    keys = torch.tensor([[[1.0, 0.0]] * 8])  # every similarity equal: ties everywhere
    matching = merge.match(keys)
    assert torch.equal(matching.dest.sum(), torch.tensor(2.0))  # exactly r tokens merge, one destination each
    assert torch.equal(matching.dest.sum(-1)[0], torch.tensor([1.0, 1.0, 0.0, 0.0]))  # the first A tokens
    assert torch.equal(matching.dest.argmax(-1)[0, :2], torch.tensor([0, 0]))  # into the first B token
    assert torch.equal(matching.keep.sum(1)[0], torch.tensor([0.0, 0.0, 1.0, 1.0]))


@pytest.mark.parametrize("model", ["vit_tiny", "vit_digits", "slab_deit_tiny"])
def test_rate_zero_is_the_plain_model_exactly(model):
    spec = create_model(model, **TINY_CONFIGS[model])
    x = torch.randn(4, *spec.example_inputs[0].shape[1:])
    with torch.no_grad():
        assert torch.equal(merging_module(spec, 0)(x), spec.module(x))


def test_unit_sizes_leave_attention_unchanged():
    block = create_model("vit_tiny", **TINY_CONFIGS["vit_tiny"]).module.blocks[0]
    x = torch.randn(2, 17, 32)
    with torch.no_grad():
        out, keys = block.attn.attend(x, torch.zeros(2, 17, 1))
        assert torch.equal(out, block.attn(x))
        assert torch.equal(keys, block.attn.k(x))


@pytest.mark.parametrize("model", ["vit_digits", "slab_deit_tiny"])
def test_each_block_sees_the_scheduled_tokens(model):
    spec = create_model(model, **TINY_CONFIGS[model])
    module = merging_module(spec, 3)
    seen = []
    blocks = module.vit.blocks if hasattr(module, "vit") else module.slab.blocks
    hooks = [b.mlp.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[1])) for b in blocks]
    with torch.no_grad():
        out = module(torch.randn(2, *spec.example_inputs[0].shape[1:]))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 10)
    expected = (14, 11) if model == "vit_digits" else (13, 13)  # 1 + 16 tokens, r = 3; SLAB unmerges per block
    assert tuple(seen) == module.mlp_tokens == expected


def test_rates_a_model_cannot_take_are_refused():
    spec = create_model("vit_digits", **TINY_CONFIGS["vit_digits"])
    assert max_rate(17, 2, protected=1, carries=True) == 5
    with pytest.raises(UnsupportedOptionError, match=r"block 1 has 10 tokens to match.*0\.\.5"):
        merging_module(spec, 6)
    tinyvit = create_model("tinyvit_5m", **TINY_CONFIGS["tinyvit_5m"])
    with pytest.raises(UnsupportedOptionError, match="TinyViT's convolutional first stage"):
        token_merge_spec(tinyvit, "0,2")
    for bad in ("0,0", "-1", "a,b", ""):
        with pytest.raises(UnsupportedOptionError, match="--token-merge"):
            parse_rates(bad)
    assert parse_rates("8, 0,4") == (0, 4, 8)


def test_each_rate_records_its_accuracy_on_the_dataset():
    from edgekit.data import load_dataset
    from edgekit.training import evaluate_module

    spec = create_model("vit_digits", **TINY_CONFIGS["vit_digits"])
    merged = token_merge_spec(spec, (0, 3), evaluate=True)
    layout = merged.extras["token_merge"]
    assert [g.name for g in merged.graphs] == ["r0", "r3"] and layout["dataset"] == "digits"
    split = load_dataset("digits", tuple(spec.example_inputs[0].shape))
    assert layout["rates"][0]["accuracy"] == evaluate_module(spec, split)
    assert 0.0 <= layout["rates"][1]["accuracy"] <= 1.0
    assert merged.graphs[1].flops() < merged.graphs[0].flops()


# -- bundles: every rate's graph verified in every format ----------------------------------------------------


class MergeBundles:
    def __init__(self, root: Path):
        self.root, self._done = root, {}

    def get(self, fmt: str):
        if fmt not in self._done:
            from edgekit.exporters.pipeline import export

            self._done[fmt] = export("vit_tiny", format=fmt, out_dir=self.root / fmt, config=TINY_CONFIGS["vit_tiny"],
                                     samples=3, token_merge=RATES)  # fmt: skip
        return self._done[fmt]


@pytest.fixture(scope="session")
def merge_bundles(tmp_path_factory) -> MergeBundles:
    return MergeBundles(tmp_path_factory.mktemp("token-merge"))


# The three-rate .pte lowers three ViTs through XNNPACK (minutes on this machine): with the slow tests, like tflite;
# the default suite keeps the ONNX bundle, which the budget tests share.
@pytest.mark.parametrize("fmt", [*(pytest.param(f, marks=pytest.mark.slow) for f in ("pte", "tflite")), "onnx"])
def test_every_rate_is_verified_in_the_bundle(merge_bundles, fmt):
    from edgekit import runtimes
    from edgekit.inputs import make_inputs
    from edgekit.validate import compare

    result = merge_bundles.get(fmt)
    manifest = result.manifest
    assert result.passed, manifest.validation.summary()
    assert [g.name for g in manifest.graphs] == [f"r{r}" for r in RATES]
    assert [r.r for r in manifest.extras.token_merge.rates] == list(RATES)
    flops = [g.flops for g in manifest.graphs]
    assert flops[0] == manifest.model.flops and flops == sorted(flops, reverse=True) and len(set(flops)) == 3
    if fmt == "pte":
        assert manifest.export.undelegated_ops == {}, manifest.export.undelegated_ops
    # re-checked here on fresh inputs, each graph against the PyTorch model merging at its rate
    spec = create_model("vit_tiny", **TINY_CONFIGS["vit_tiny"])
    inputs = make_inputs(spec.input_specs, 3, seed=99)
    for r in RATES:
        module = merging_module(spec, r)
        with torch.no_grad():
            reference = [{"logits": module(torch.from_numpy(s["image"])).numpy()} for s in inputs]
        with runtimes.load(result.bundle_dir, graph=f"r{r}") as runtime:
            candidate = [runtime.run(s) for s in inputs]
        assert compare(reference, candidate, manifest.validation.tolerance).passed


@pytest.mark.slow
def test_slab_rates_lower_entirely_to_xnnpack(tmp_path):
    from edgekit.exporters.pipeline import export

    result = export("slab_deit_tiny", format="pte", out_dir=tmp_path / "slab", config=TINY_CONFIGS["slab_deit_tiny"],
                    samples=3, token_merge=(0, 3))  # fmt: skip
    assert result.passed and result.manifest.export.undelegated_ops == {}


# -- the budget ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlowDevice:
    """A device that spends ``ms_per_mflop`` per million FLOPs of a call, on a virtual clock (no sleeping)."""

    ms_per_mflop: float
    fail: bool = False

    def probe(self):
        from edgekit.runtimes.budget import LatencyProbe

        now = [0.0]
        device = self

        class Probe(LatencyProbe):
            def run_once(self, runtime, feed):
                if device.fail:
                    raise AssertionError("measured again although the device's timing is cached")
                runtime.run(feed)
                now[0] += runtime.graph.flops / 1e6 * device.ms_per_mflop / 1e3

        return Probe(warmup=1, runs=5, clock=lambda: now[0])


def test_a_tight_budget_on_a_slow_device_picks_a_higher_rate(merge_bundles, tmp_path):
    from edgekit import load

    bundle = merge_bundles.get("onnx").bundle_dir
    flops = {g.name: g.flops for g in merge_bundles.get("onnx").manifest.graphs}
    cost = {name: f / 1e6 * 10.0 for name, f in flops.items()}  # ms on a device at 10 ms per MFLOP
    cases = [(1e4, "r0", True), ((cost["r0"] + cost["r2"]) / 2, "r2", True), (cost["r5"] + 0.01, "r5", True),
             (cost["r5"] / 2, "r5", False)]  # fmt: skip
    for i, (budget, expected, fits) in enumerate(cases):
        runtime = load(bundle, budget_ms=budget, probe=SlowDevice(10.0).probe(), cache_dir=tmp_path / str(i))
        with runtime:
            assert runtime.budget.graph == runtime.graph.name == expected, (budget, runtime.budget)
            assert runtime.budget.fits is fits and not runtime.budget.cached
            assert runtime.run({"image": torch.randn(1, 3, 32, 32).numpy()})["logits"].shape == (1, 10)
        p90 = {t.graph: t.p90_ms for t in runtime.budget.timings}
        assert p90 == pytest.approx(cost, rel=1e-6)
    # the same bundle on the same device: read from the cache (a probe that would measure fails)
    again = load(bundle, budget_ms=cases[1][0], probe=SlowDevice(10.0, fail=True).probe(), cache_dir=tmp_path / "1")
    assert again.budget.cached and again.budget.graph == "r2"
    cache = json.loads(Path(again.budget.cache_file).read_text())
    assert cache["device"]["threads"] is None and set(cache["samples_ms"]) == {"r0", "r2", "r5"}
    with pytest.raises(AssertionError, match="cached"):  # another thread count is another measurement
        load(bundle, budget_ms=10, threads=1, probe=SlowDevice(10.0, fail=True).probe(), cache_dir=tmp_path / "1")


def test_the_most_accurate_fitting_rate_wins():
    from edgekit.runtimes.budget import GraphTiming, pick

    timings = (GraphTiming("r0", 0, 9, 10, 5, 0.90), GraphTiming("r4", 4, 6, 7, 5, 0.91),
               GraphTiming("r8", 8, 4, 5, 5, 0.85))  # fmt: skip
    assert pick(timings, 12) == ("r4", True)  # more accurate than r0 here, and it fits
    assert pick(timings, 6) == ("r8", True)
    assert pick(timings, 1) == ("r8", False)
    unknown = tuple(GraphTiming(t.graph, t.r, t.p50_ms, t.p90_ms, 5) for t in timings)
    assert pick(unknown, 7.5) == ("r4", True)  # no accuracies: the lowest rate that fits


def test_cli_runs_within_a_budget_and_profiles_the_curve(merge_bundles, tmp_path):
    from tests.helpers.cli import assert_user_error, invoke

    bundle = merge_bundles.get("onnx").bundle_dir
    result = invoke("run", bundle, "--random", "--budget-ms", "10000", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["budget"]["graph"] == "r0" and payload["budget"]["fits"] is True
    plot = tmp_path / "curve.png"
    result = invoke("profile", bundle, "--runs", "3", "--warmup", "1", "--energy", "none", "--plot", str(plot))
    assert result.exit_code == 0, result.output
    assert "token-merge rates" in result.output and "speed-up" in result.output
    assert plot.stat().st_size > 0 and (tmp_path / "curve-latency.png").stat().st_size > 0
    assert_user_error(invoke("run", bundle, "--random", "--budget-ms", "5", "--graph", "r0"), "not both")
    assert_user_error(invoke("export", "vit_digits", "--set", "depth=2", "--token-merge", "0,6"), "0..5")
    assert_user_error(invoke("export", "tinyvit_5m", "--token-merge", "0,4"), "TinyViT")
