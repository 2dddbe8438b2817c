"""Structured pruning: exact bookkeeping, importance-driven choice, limits respected."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.errors import ConfigError
from edgekit.models import create_model
from edgekit.splitter.prune import Importance, KeepChoice, VitShape, prune_vit, taylor_importance


@pytest.fixture(scope="module")
def vit():
    return create_model("vit_digits", depth=2).module


def test_keeping_everything_is_the_same_function(vit):
    shape = VitShape.of(vit)
    importance = Importance(tuple(np.zeros(h) for h in shape.heads), tuple(np.zeros(m) for m in shape.mlp))
    pruned = prune_vit(vit, shape.full(), importance)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), vit(x))


@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.3, 0.01])
def test_parameter_formula_matches_the_pruned_module(vit, ratio):
    shape = VitShape.of(vit)
    choice = shape.choice(ratio)
    importance = Importance(
        tuple(np.arange(h, dtype=float) for h in shape.heads), tuple(np.arange(m, dtype=float) for m in shape.mlp)
    )
    pruned = prune_vit(vit, choice, importance)
    counted = sum(p.numel() for n, p in pruned.named_parameters() if not n.startswith("head."))
    assert counted == shape.parameters(choice)
    assert [b.attn.heads for b in pruned.blocks] == list(choice.heads)
    assert [b.mlp.fc1.out_features for b in pruned.blocks] == list(choice.mlp)
    assert pruned(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_pruning_keeps_the_heads_and_neurons_with_the_highest_importance(vit):
    shape = VitShape.of(vit)
    heads = (np.array([0.1, 5.0, 0.2, 3.0]), np.array([9.0, 0.0, 0.0, 1.0]))
    neurons = tuple(np.zeros(m) for m in shape.mlp)
    pruned = prune_vit(vit, KeepChoice(0.5, (2, 2), (4, 4)), Importance(heads, (neurons[0], neurons[1])))
    hd = shape.head_dim
    kept = {0: [1, 3], 1: [0, 3]}
    for i, block in enumerate(pruned.blocks):
        rows = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in kept[i]])
        torch.testing.assert_close(block.attn.q.weight, vit.blocks[i].attn.q.weight[rows])
        torch.testing.assert_close(block.attn.proj.weight, vit.blocks[i].attn.proj.weight[:, rows])


def test_taylor_importance_is_zero_for_a_head_that_cannot_matter(vit):
    silent = create_model("vit_digits", depth=2).module
    with torch.no_grad():
        hd = silent.blocks[0].attn.head_dim
        silent.blocks[0].attn.proj.weight[:, 2 * hd : 3 * hd] = 0  # head 2 of block 0 never reaches the output
        silent.blocks[1].mlp.fc2.weight[:, 5] = 0  # neither does neuron 5 of block 1
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    importance = taylor_importance(silent, x, y)
    assert importance.heads[0][2] == 0 and importance.heads[0].max() > 0
    assert importance.neurons[1][5] == 0 and importance.neurons[1].max() > 0
    assert all(p.grad is None for p in silent.parameters())  # leaves no gradients behind


def test_largest_choice_respects_both_limits(vit):
    shape = VitShape.of(vit)
    full = shape.parameters(shape.full())
    third = shape.largest_choice(full // 3, None)
    assert shape.parameters(third) <= full // 3
    assert shape.parameters(shape.choice(third.ratio + 0.01)) > full // 3 or third.ratio >= 0.99
    memory = shape.memory_bytes(shape.choice(0.5))
    half = shape.largest_choice(None, memory)
    assert shape.memory_bytes(half) <= memory and half.ratio >= 0.5
    with pytest.raises(ConfigError, match="smallest sub-model"):
        shape.largest_choice(None, 1000)
