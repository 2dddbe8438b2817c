"""Structured pruning of a ViT: whole attention heads and MLP hidden neurons, chosen by Taylor importance.

The importance of a structure (one head's output, one MLP neuron) on a batch is |sum of activation x
gradient of the loss| over its elements, the first-order change in the loss if it were removed, averaged
over samples. Every block keeps the same fraction of its heads and neurons (at least one of each), the
ones that matter most on the sub-model's data; the head dimension and the model width stay, so the
pruned model is a :class:`VisionTransformer` with per-block head counts and MLP widths.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekit.errors import ConfigError
from edgekit.models.vit import VisionTransformer

BYTES_PER_VALUE = 4  # fp32 shards


@dataclass(frozen=True)
class VitShape:
    """What the pruning arithmetic needs to know about a ViT."""

    dim: int
    head_dim: int
    tokens: int
    heads: tuple[int, ...]
    mlp: tuple[int, ...]
    fixed_parameters: int  # embedding, positions, norms, biases that pruning keeps (no classifier head)

    @classmethod
    def of(cls, module: VisionTransformer) -> VitShape:
        blocks = list(module.blocks)
        dim = module.pos_embed.shape[-1]
        head_dim = blocks[0].attn.head_dim
        heads = tuple(b.attn.heads for b in blocks)
        mlp = tuple(b.mlp.fc1.out_features for b in blocks)
        shape = cls(dim, head_dim, module.pos_embed.shape[1], heads, mlp, 0)
        features = sum(p.numel() for n, p in module.named_parameters() if not n.startswith("head."))
        return VitShape(dim, head_dim, shape.tokens, heads, mlp, features - shape._prunable(heads, mlp))

    @property
    def per_head(self) -> int:  # q, k, v weights and biases of one head, and its columns of the projection
        return 4 * self.dim * self.head_dim + 3 * self.head_dim

    @property
    def per_neuron(self) -> int:  # one row of fc1 with its bias, one column of fc2
        return 2 * self.dim + 1

    def _prunable(self, heads: tuple[int, ...], mlp: tuple[int, ...]) -> int:
        return sum(h * self.per_head + m * self.per_neuron for h, m in zip(heads, mlp, strict=True))

    def parameters(self, choice: KeepChoice) -> int:
        """Parameters of the feature extractor (everything but the classifier head)."""
        return self.fixed_parameters + self._prunable(choice.heads, choice.mlp)

    def memory_bytes(self, choice: KeepChoice) -> int:
        """Weights plus the largest activations alive at once (the residual stream twice, the widest
        intermediate: the attention matrices or the MLP hidden layer), batch 1, fp32."""
        widest = max(max(h * self.tokens, m) for h, m in zip(choice.heads, choice.mlp, strict=True))
        return BYTES_PER_VALUE * (self.parameters(choice) + self.tokens * (2 * self.dim + widest))

    def full(self) -> KeepChoice:
        return KeepChoice(1.0, self.heads, self.mlp)

    def choice(self, ratio: float) -> KeepChoice:
        heads = tuple(max(1, math.floor(ratio * h + 1e-9)) for h in self.heads)
        mlp = tuple(max(1, math.floor(ratio * m + 1e-9)) for m in self.mlp)
        return KeepChoice(ratio, heads, mlp)

    def largest_choice(self, max_parameters: int | None, max_memory: int | None, ceiling: float = 1.0) -> KeepChoice:
        """The largest keep ratio (steps of 1/1000, at most ``ceiling``) whose shard fits both limits."""
        for step in range(round(ceiling * 1000), 0, -1):
            choice = self.choice(step / 1000)
            if (max_parameters is None or self.parameters(choice) <= max_parameters) and (
                max_memory is None or self.memory_bytes(choice) <= max_memory
            ):
                return choice
        smallest = self.choice(0.0)
        if max_memory is not None and self.memory_bytes(smallest) > max_memory:
            raise ConfigError(
                f"even the smallest sub-model (one head and one neuron a block) needs "
                f"{self.memory_bytes(smallest) / 1e6:.2f} MB, more than the {max_memory / 1e6:.2f} MB budget"
            )
        return smallest


@dataclass(frozen=True)
class KeepChoice:
    ratio: float
    heads: tuple[int, ...]
    mlp: tuple[int, ...]


@dataclass(frozen=True)
class Importance:
    heads: tuple[np.ndarray, ...]  # per block, (H,)
    neurons: tuple[np.ndarray, ...]  # per block, (hidden,)


def taylor_importance(module: VisionTransformer, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128) -> Importance:
    """Mean |sum(activation x gradient)| per head and per MLP neuron, over the samples (x, y)."""
    blocks = list(module.blocks)
    captured: dict[tuple[int, str], torch.Tensor] = {}

    def keep(key: tuple[int, str]):
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            args[0].retain_grad()
            captured[key] = args[0]

        return hook

    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.attn.proj.register_forward_pre_hook(keep((i, "attn"))))
        handles.append(block.mlp.fc2.register_forward_pre_hook(keep((i, "mlp"))))
    heads = [torch.zeros(b.attn.heads) for b in blocks]
    neurons = [torch.zeros(b.mlp.fc1.out_features) for b in blocks]
    was_training = module.training
    module.eval()
    try:
        for start in range(0, len(x), batch_size):
            captured.clear()
            module.zero_grad(set_to_none=True)
            loss = F.cross_entropy(
                module(x[start : start + batch_size]), y[start : start + batch_size], reduction="sum"
            )
            loss.backward()
            for i, block in enumerate(blocks):
                attn = captured[(i, "attn")]
                contrib = (attn * attn.grad).detach()  # (B, N, H*D)
                b, n, _ = contrib.shape
                heads[i] += contrib.reshape(b, n, block.attn.heads, -1).sum(dim=(1, 3)).abs().sum(0)
                hidden = captured[(i, "mlp")]
                neurons[i] += (hidden * hidden.grad).detach().sum(dim=1).abs().sum(0)
    finally:
        for h in handles:
            h.remove()
        module.zero_grad(set_to_none=True)
        module.train(was_training)
    return Importance(tuple((h / len(x)).numpy() for h in heads), tuple((n / len(x)).numpy() for n in neurons))


def prune_vit(module: VisionTransformer, choice: KeepChoice, importance: Importance) -> VisionTransformer:
    """A smaller copy keeping, in every block, the most important heads and neurons (weights copied)."""
    shape = VitShape.of(module)
    if len(choice.heads) != len(shape.heads):
        raise ConfigError(f"keep choice has {len(choice.heads)} blocks, the model {len(shape.heads)}")
    pruned = copy.deepcopy(module)
    hd = shape.head_dim
    for block, keep_h, keep_m, head_score, neuron_score in zip(
        pruned.blocks, choice.heads, choice.mlp, importance.heads, importance.neurons, strict=True
    ):
        heads = np.sort(np.argsort(-head_score, kind="stable")[:keep_h])
        cols = torch.as_tensor(np.concatenate([np.arange(h * hd, (h + 1) * hd) for h in heads]))
        attn = block.attn
        for name in ("q", "k", "v"):
            setattr(attn, name, _take_rows(getattr(attn, name), cols))
        attn.proj = _take_columns(attn.proj, cols)
        attn.heads = keep_h
        neurons = torch.as_tensor(np.sort(np.argsort(-neuron_score, kind="stable")[:keep_m]))
        block.mlp.fc1 = _take_rows(block.mlp.fc1, neurons)
        block.mlp.fc2 = _take_columns(block.mlp.fc2, neurons)
    return pruned


def _take_rows(layer: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    out = nn.Linear(layer.in_features, len(rows))
    with torch.no_grad():
        out.weight.copy_(layer.weight[rows])
        out.bias.copy_(layer.bias[rows])
    return out


def _take_columns(layer: nn.Linear, cols: torch.Tensor) -> nn.Linear:
    out = nn.Linear(len(cols), layer.out_features)
    with torch.no_grad():
        out.weight.copy_(layer.weight[:, cols])
        out.bias.copy_(layer.bias)
    return out
