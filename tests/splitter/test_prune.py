"""Structured pruning: exact bookkeeping on every axis, Taylor scores that see what cannot matter, search limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from edgekit.errors import ConfigError
from edgekit.models import create_model
from edgekit.splitter.prune import BlockKeep, Importance, Keep, VitShape, prune_vit, taylor_importance
from edgekit.splitter.structure_search import Budget, search_structure


@pytest.fixture(scope="module")
def vit():
    return create_model("vit_digits", depth=3).module.eval()  # width 64, 4 heads of 16, MLP 128


def _features(module: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if not n.startswith("head."))


def _flops(module, x) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module.features(x)
    return int(counter.get_total_flops())


def test_keeping_everything_is_the_same_function(vit):
    pruned = prune_vit(vit, Keep.everything(VitShape.of(vit))).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), vit(x), rtol=0, atol=0)
    assert pruned is not vit and _features(pruned) == _features(vit)


def _zeroed(vit):
    """A copy in which block 1 adds nothing to the stream and, in block 0, dimension 5 of every head is zero in q,
    k and v: dropping that block and that dimension must leave the function unchanged."""
    import copy

    model = copy.deepcopy(vit)
    with torch.no_grad():
        for layer in (model.blocks[1].attn.proj, model.blocks[1].mlp.fc2):
            layer.weight.zero_()
            layer.bias.zero_()
        attn = model.blocks[0].attn
        rows = [h * attn.head_dim + 5 for h in range(attn.heads)]
        for name in ("q", "k", "v"):
            getattr(attn, name).weight[rows] = 0
            getattr(attn, name).bias[rows] = 0
    return model


def test_dropping_a_silent_block_and_a_silent_head_dimension_is_the_same_function(vit):
    model = _zeroed(vit)
    everything = Keep.everything(VitShape.of(model))
    b0 = everything.blocks[0]
    dims = tuple(tuple(d for d in range(16) if d != 5) for _ in b0.heads)
    keep = Keep(everything.channels, (BlockKeep(0, b0.heads, dims, b0.neurons), everything.blocks[2]))
    pruned = prune_vit(model, keep).eval()
    assert keep.structure.depth == 2 and pruned.blocks[0].attn.head_dim == 15
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():  # exact up to summation order: the query scale stays the trained 16^-0.5
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-5, atol=1e-5)


def _random_keep(shape: VitShape, rng: np.random.Generator) -> Keep:
    full = shape.full()

    def some(size: int) -> tuple[int, ...]:
        return tuple(sorted(rng.choice(size, int(rng.integers(1, size + 1)), replace=False).tolist()))

    blocks = []
    for index in some(full.depth):
        b = full.blocks[index]
        heads = some(b.heads)
        dim = int(rng.integers(1, b.head_dim + 1))
        dims = tuple(tuple(sorted(rng.choice(b.head_dim, dim, replace=False).tolist())) for _ in heads)
        blocks.append(BlockKeep(index, heads, dims, some(b.mlp)))
    return Keep(some(full.width), tuple(blocks))


@pytest.mark.parametrize("seed", range(6))
def test_size_arithmetic_equals_the_built_module_for_random_structures(vit, seed):
    shape = VitShape.of(vit)
    keep = _random_keep(shape, np.random.default_rng(seed))
    pruned = prune_vit(vit, keep).eval()
    structure = keep.structure
    assert _features(pruned) == shape.parameters(structure)
    x = torch.randn(1, 1, 8, 8)
    assert _flops(pruned, x) == shape.flops(structure)
    assert VitShape.of(pruned).full() == structure
    assert pruned(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_pruning_copies_the_kept_rows_and_columns(vit):
    keep = Keep(
        (3, 10, 40),
        (BlockKeep(2, (1, 3), ((0, 7), (2, 15)), (5, 6, 100)),),
    )
    pruned = prune_vit(vit, keep)
    c = torch.tensor([3, 10, 40])
    rows = torch.tensor([16 + 0, 16 + 7, 48 + 2, 48 + 15])
    old, new = vit.blocks[2], pruned.blocks[0]
    torch.testing.assert_close(new.attn.q.weight, old.attn.q.weight[rows][:, c])
    torch.testing.assert_close(new.attn.proj.weight, old.attn.proj.weight[c][:, rows])
    torch.testing.assert_close(new.mlp.fc1.weight, old.mlp.fc1.weight[[5, 6, 100]][:, c])
    torch.testing.assert_close(pruned.pos_embed, vit.pos_embed[..., c])
    torch.testing.assert_close(pruned.head.weight, vit.head.weight[:, c])
    with pytest.raises(ConfigError, match="head dimensions"):
        prune_vit(vit, Keep((0,), (BlockKeep(0, (0, 1), ((0,), (0, 1)), (0,)),)))


def test_taylor_scores_are_zero_for_structures_that_cannot_matter(vit):
    silent = _zeroed(vit)
    with torch.no_grad():
        silent.blocks[0].attn.proj.weight[:, 2 * 16 : 3 * 16] = 0  # head 2 of block 0 never reaches the stream
        silent.blocks[2].mlp.fc2.weight[:, 5] = 0  # neither does neuron 5 of block 2
        # channel 7 is never written (embedding, branch outputs) nor read (every norm's output)
        silent.patch_embed.weight[7] = 0
        silent.patch_embed.bias[7] = 0
        silent.cls_token[..., 7] = 0
        silent.pos_embed[..., 7] = 0
        for block in silent.blocks:
            for norm in (block.norm1, block.norm2):
                norm.weight[7] = norm.bias[7] = 0
            for layer in (block.attn.proj, block.mlp.fc2):
                layer.weight[7] = 0
                layer.bias[7] = 0
        silent.norm.weight[7] = silent.norm.bias[7] = 0
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    imp = taylor_importance(silent, x, y)
    assert imp.heads[0][2] == 0 and imp.heads[0].max() > 0
    assert imp.neurons[2][5] == 0 and imp.neurons[2].max() > 0
    assert imp.blocks[1] == 0 and imp.blocks[0] > 0 and imp.blocks[2] > 0
    assert (imp.head_dims[0][:, 5] == 0).all() and imp.head_dims[0].max() > 0
    assert imp.channels[7] == 0 and imp.channels.max() > 0
    assert all(p.grad is None for p in silent.parameters())  # leaves no gradients behind


def test_the_search_keeps_the_full_model_when_it_fits_and_respects_every_limit(vit):
    shape = VitShape.of(vit)
    importance = taylor_importance(vit, torch.randn(48, 1, 8, 8), torch.randint(0, 10, (48,)))
    full = shape.full()
    roomy = search_structure(shape, importance, Budget(shape.parameters(full), shape.memory_bytes(full)))
    assert roomy.structure == full and roomy.binding == () and roomy.steps == 0
    for budget in (
        Budget(max_parameters=shape.parameters(full) // 25),
        Budget(max_memory_bytes=shape.memory_bytes(full) // 4),
        Budget(max_flops=shape.flops(full) // 10),
    ):
        result = search_structure(shape, importance, budget)
        s = result.structure
        for name, (fn, limit) in budget.limits(shape).items():
            assert fn(s) <= limit and name in result.binding
        assert prune_vit(vit, result.keep) is not None
    with pytest.raises(ConfigError, match="smallest sub-model"):
        search_structure(shape, importance, Budget(max_memory_bytes=1000))


def test_the_ranking_is_global_across_blocks_and_kinds(vit):
    """Block 0 and every head matter, blocks 1 and 2 hardly: the search removes what matters least per parameter
    first -- the unimportant blocks go whole, block 0 keeps its heads and loses head dimensions or neurons, where a
    uniform ratio would cut every block and every kind alike."""
    shape = VitShape.of(vit)
    importance = Importance.uniform(shape, 1.0)
    importance = Importance(
        importance.channels * 1e3, np.array([1e3, 1e-6, 1e-6]), tuple(h * 1e3 for h in importance.heads),
        importance.head_dims, importance.neurons,
    )  # fmt: skip
    result = search_structure(shape, importance, Budget(max_parameters=shape.parameters(shape.full()) // 3))
    assert result.keep.block_indices == (0,)
    (block,) = result.structure.blocks
    assert block.heads == 4 and result.structure.width == 64 and (block.head_dim, block.mlp) != (16, 128)


@pytest.mark.slow  # three exports: minutes on a loaded machine; the session plan (test_plan.py) exports its shards
@pytest.mark.parametrize("fmt", ["onnx", "tflite", "pte"])
def test_a_shard_pruned_on_every_axis_exports_verified(fmt, tmp_path):
    """Width, a dropped block, heads, an odd head dimension and neurons pruned, all by hand (the session plan's
    shards are pruned where the search chose): a plain module that every format exports and verifies against
    PyTorch, nothing left outside XNNPACK."""
    from edgekit.exporters.pipeline import export
    from edgekit.splitter.classwise import _shard_spec

    spec = create_model("vit_digits", depth=3)
    keep = Keep(
        tuple(range(0, 64, 2)),  # width 32
        (
            BlockKeep(0, (0, 2, 3), tuple((0, 3, 4, 9, 11) for _ in range(3)), tuple(range(0, 128, 3))),
            BlockKeep(2, (1,), ((1, 2, 3, 5, 8, 13, 15),), tuple(range(20))),
        ),
    )
    shard = _shard_spec(spec, prune_vit(spec.module, keep).eval(), 0)
    result = export(shard, format=fmt, out_dir=tmp_path / fmt, samples=4)
    manifest = result.manifest
    assert manifest.validation.passed
    assert manifest.model.config["block_head_dim"] == [5, 7] and manifest.model.config["dim"] == 32
    if fmt == "pte":
        assert manifest.export.undelegated_op_count == 0, manifest.export.undelegated_ops
