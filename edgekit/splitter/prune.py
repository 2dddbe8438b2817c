"""Structured pruning of a ViT along five axes, every structure scored by Taylor importance on a subset's data.

The axes: the residual width (one set of kept channels, shared by the patch embedding, the class token and
positions, every norm, every projection into and out of the stream), whole blocks, attention heads, the
per-head dimension (the same count in every head of a block; each head keeps its own most important
dimensions of q, k and v, and the output projection the matching columns) and MLP hidden neurons.

Importance: a gate of ones per sample multiplies each structure wherever it appears (a residual channel where
the stream is written -- the embedding, every branch output -- and where it is read -- every norm's output; a
block on both branch outputs; a head dimension on q, k and v). The gradient of the loss with respect to a gate
is the first-order change in the loss if the structure were zeroed (activation x gradient summed over its
elements); a structure's score is its absolute value averaged over the samples. Which structures go is the
structure search's choice (``structure_search.py``); :func:`prune_vit` builds the smaller model from the
kept indices as a plain :class:`VisionTransformer`, weights copied.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekit.errors import ConfigError
from edgekit.models.vit import VisionTransformer

BYTES_PER_VALUE = 4  # fp32 shards


@dataclass(frozen=True)
class BlockStructure:
    heads: int
    head_dim: int
    mlp: int

    @property
    def inner(self) -> int:  # width of q, k, v
        return self.heads * self.head_dim


@dataclass(frozen=True)
class VitStructure:
    """How large each part of a (pruned) ViT is: the residual width and, per kept block, heads, head dim, MLP."""

    width: int
    blocks: tuple[BlockStructure, ...]

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def to_json(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "depth": self.depth,
            "heads": [b.heads for b in self.blocks],
            "head_dim": [b.head_dim for b in self.blocks],
            "mlp": [b.mlp for b in self.blocks],
        }


@dataclass(frozen=True)
class VitShape:
    """The full model's fixed geometry, and the size arithmetic of any structure cut from it.

    The formulas count what :class:`VisionTransformer` builds (tests compare them with built modules):
    parameters of the feature extractor (everything but the classifier head), FLOPs as
    ``torch.utils.flop_counter`` counts them (a multiply-add is 2; the norms' two mean matmuls included), and
    memory as weights plus the largest activations alive at once, batch 1, fp32.
    """

    patch_inputs: int  # in_chans * patch_size^2: one patch's values
    tokens: int  # class token + patches
    full_structure: VitStructure

    @classmethod
    def of(cls, module: VisionTransformer) -> VitShape:
        conv = module.patch_embed
        blocks = tuple(BlockStructure(b.attn.heads, b.attn.head_dim, b.mlp.fc1.out_features) for b in module.blocks)
        return cls(conv.in_channels * math.prod(conv.kernel_size), module.pos_embed.shape[1],
                   VitStructure(module.pos_embed.shape[-1], blocks))  # fmt: skip

    def full(self) -> VitStructure:
        return self.full_structure

    def smallest(self) -> VitStructure:
        return VitStructure(1, (BlockStructure(1, 1, 1),))

    def parameters(self, s: VitStructure) -> int:
        w = s.width
        embed = w * self.patch_inputs + w + w + self.tokens * w  # patch conv (+ bias), class token, positions
        blocks = sum(6 * w + 4 * w * b.inner + 3 * b.inner + 2 * w * b.mlp + b.mlp for b in s.blocks)
        return embed + blocks + 2 * w  # + the final norm

    def flops(self, s: VitStructure) -> int:
        w, t = s.width, self.tokens
        norm = 4 * t * w  # two (t, w) x (w, 1) matmuls: the mean and the variance
        embed = 2 * (t - 1) * w * self.patch_inputs
        blocks = sum(
            2 * norm + 2 * t * w * 4 * b.inner + 4 * b.heads * t * t * b.head_dim + 4 * t * w * b.mlp for b in s.blocks
        )
        return embed + blocks + norm

    def memory_bytes(self, s: VitStructure) -> int:
        """Weights plus the residual stream twice and the widest intermediate (q, k, v; the attention matrices; the
        MLP hidden layer)."""
        widest = max(max(3 * b.inner, b.heads * self.tokens, b.mlp) for b in s.blocks)
        return BYTES_PER_VALUE * (self.parameters(s) + self.tokens * (2 * s.width + widest))


@dataclass(frozen=True)
class BlockKeep:
    """What one kept block keeps, as indices into the full model's block ``index``."""

    index: int
    heads: tuple[int, ...]
    dims: tuple[tuple[int, ...], ...]  # per kept head, its kept dimensions (the same count in every head)
    neurons: tuple[int, ...]


@dataclass(frozen=True)
class Keep:
    """The kept structures of a pruned ViT, as indices into the full one."""

    channels: tuple[int, ...]
    blocks: tuple[BlockKeep, ...]

    @property
    def structure(self) -> VitStructure:
        return VitStructure(
            len(self.channels),
            tuple(BlockStructure(len(b.heads), len(b.dims[0]), len(b.neurons)) for b in self.blocks),
        )

    @property
    def block_indices(self) -> tuple[int, ...]:
        return tuple(b.index for b in self.blocks)

    @classmethod
    def everything(cls, shape: VitShape) -> Keep:
        full = shape.full()
        return cls(
            tuple(range(full.width)),
            tuple(
                BlockKeep(i, tuple(range(b.heads)), tuple(tuple(range(b.head_dim)) for _ in range(b.heads)),
                          tuple(range(b.mlp)))
                for i, b in enumerate(full.blocks)
            ),
        )  # fmt: skip


@dataclass(frozen=True)
class Importance:
    """Taylor scores of every prunable structure of a ViT (mean |first-order loss change| if it were zeroed)."""

    channels: np.ndarray  # (width,)
    blocks: np.ndarray  # (depth,)
    heads: tuple[np.ndarray, ...]  # per block, (heads,)
    head_dims: tuple[np.ndarray, ...]  # per block, (heads, head_dim)
    neurons: tuple[np.ndarray, ...]  # per block, (mlp,)

    @classmethod
    def uniform(cls, shape: VitShape, value: float = 0.0) -> Importance:
        full = shape.full()
        return cls(
            np.full(full.width, value),
            np.full(full.depth, value),
            tuple(np.full(b.heads, value) for b in full.blocks),
            tuple(np.full((b.heads, b.head_dim), value) for b in full.blocks),
            tuple(np.full(b.mlp, value) for b in full.blocks),
        )


class _Gates:
    """Per-sample gates of ones at every structure of a ViT, applied by hooks; their gradients are the scores."""

    def __init__(self, module: VisionTransformer):
        self.module = module
        self.blocks = list(module.blocks)
        self.current: dict[str, Any] = {}
        self.handles: list[Any] = []

    def new(self, batch: int) -> list[torch.Tensor]:
        def ones(*shape: int) -> torch.Tensor:
            return torch.ones(batch, *shape, requires_grad=True)

        width = self.module.pos_embed.shape[-1]
        g = self.current
        g["channel"] = ones(1, width)
        g["block"] = ones(len(self.blocks), 1, 1)
        g["head"] = [ones(1, b.attn.heads, 1) for b in self.blocks]
        g["dim"] = [ones(1, b.attn.heads * b.attn.head_dim) for b in self.blocks]
        g["neuron"] = [ones(1, b.mlp.fc1.out_features) for b in self.blocks]
        return [g["channel"], g["block"], *g["head"], *g["dim"], *g["neuron"]]

    def __enter__(self) -> _Gates:
        g = self.current

        def on_output(gate: Callable[[], torch.Tensor]):
            return lambda _m, _args, out: out * gate()

        def on_input(gate: Callable[[torch.Tensor], torch.Tensor]):
            return lambda _m, args: (gate(args[0]),)

        def channel() -> torch.Tensor:
            return g["channel"]

        hooks: list[tuple[nn.Module, str, Any]] = [
            (self.blocks[0], "pre", on_input(lambda x: x * g["channel"])),  # the embedding's write
            (self.module.norm, "out", on_output(channel)),
        ]
        for i, block in enumerate(self.blocks):
            attn = block.attn

            def written(i: int = i) -> torch.Tensor:
                return g["channel"] * g["block"][:, i]

            def heads(x: torch.Tensor, i: int = i, h: int = attn.heads) -> torch.Tensor:
                b, n, inner = x.shape
                return (x.reshape(b, n, h, inner // h) * g["head"][i]).reshape(b, n, inner)

            hooks += [
                (block.norm1, "out", on_output(channel)),
                (block.norm2, "out", on_output(channel)),
                *((getattr(attn, name), "out", on_output(lambda i=i: g["dim"][i])) for name in ("q", "k", "v")),
                (attn.proj, "pre", on_input(heads)),
                (attn.proj, "out", on_output(written)),
                (block.mlp.fc2, "pre", on_input(lambda x, i=i: x * g["neuron"][i])),
                (block.mlp.fc2, "out", on_output(written)),
            ]
        for module, kind, hook in hooks:
            register = module.register_forward_pre_hook if kind == "pre" else module.register_forward_hook
            self.handles.append(register(hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def taylor_importance(module: VisionTransformer, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128) -> Importance:
    """Mean |gate gradient| of every structure over the samples (x, y), the loss being the full cross-entropy."""
    blocks = list(module.blocks)
    totals: list[torch.Tensor] | None = None
    was_training = module.training
    module.eval()
    try:
        with _Gates(module) as gates:
            for start in range(0, len(x), batch_size):
                xb, yb = x[start : start + batch_size], y[start : start + batch_size]
                inputs = gates.new(len(xb))
                loss = F.cross_entropy(module(xb), yb, reduction="sum")
                grads = torch.autograd.grad(loss, inputs)
                sums = [g.abs().sum(0) for g in grads]
                totals = sums if totals is None else [t + s for t, s in zip(totals, sums, strict=True)]
    finally:
        module.train(was_training)
    assert totals is not None, "taylor_importance needs at least one sample"
    scores = [(t / len(x)).detach().numpy() for t in totals]
    depth = len(blocks)
    heads = scores[2 : 2 + depth]
    dims = scores[2 + depth : 2 + 2 * depth]
    neurons = scores[2 + 2 * depth :]
    return Importance(
        channels=scores[0].reshape(-1),
        blocks=scores[1].reshape(-1),
        heads=tuple(h.reshape(-1) for h in heads),
        head_dims=tuple(d.reshape(b.attn.heads, b.attn.head_dim) for d, b in zip(dims, blocks, strict=True)),
        neurons=tuple(n.reshape(-1) for n in neurons),
    )


def prune_vit(module: VisionTransformer, keep: Keep) -> VisionTransformer:
    """A new, smaller :class:`VisionTransformer` holding the kept structures of ``module`` (weights copied)."""
    shape = VitShape.of(module)
    full = shape.full()
    _check_keep(keep, full)
    s = keep.structure
    conv = module.patch_embed
    first = module.blocks[0].attn
    patch = conv.kernel_size[0]
    pruned = VisionTransformer(
        img_size=int(round(math.sqrt(module.num_patches))) * patch, patch_size=patch, in_chans=conv.in_channels,
        num_classes=module.head.out_features, dim=s.width, depth=s.depth, heads=max(b.heads for b in s.blocks),
        mlp_ratio=1.0, block_heads=[b.heads for b in s.blocks], block_mlp=[b.mlp for b in s.blocks],
        block_head_dim=[b.head_dim for b in s.blocks], attention=first.attention, clip_alpha=first.clip_alpha,
        attention_scale=first.scale,
    )  # fmt: skip
    c = torch.as_tensor(keep.channels)
    with torch.no_grad():
        pruned.patch_embed.weight.copy_(conv.weight[c])
        pruned.patch_embed.bias.copy_(conv.bias[c])
        pruned.cls_token.copy_(module.cls_token[..., c])
        pruned.pos_embed.copy_(module.pos_embed[..., c])
        _copy_norm(pruned.norm, module.norm, c)
        pruned.head.weight.copy_(module.head.weight[:, c])
        pruned.head.bias.copy_(module.head.bias)
        for new, kept in zip(pruned.blocks, keep.blocks, strict=True):
            old = module.blocks[kept.index]
            new.attn.scale = old.attn.scale  # the logits stay partial sums of the trained ones
            hd = old.attn.head_dim
            rows = torch.as_tensor([h * hd + d for h, dims in zip(kept.heads, kept.dims, strict=True) for d in dims])
            n = torch.as_tensor(kept.neurons)
            _copy_norm(new.norm1, old.norm1, c)
            _copy_norm(new.norm2, old.norm2, c)
            for name in ("q", "k", "v"):
                _copy_linear(getattr(new.attn, name), getattr(old.attn, name), rows, c)
            _copy_linear(new.attn.proj, old.attn.proj, c, rows)
            _copy_linear(new.mlp.fc1, old.mlp.fc1, n, c)
            _copy_linear(new.mlp.fc2, old.mlp.fc2, c, n)
    return pruned.train(module.training)


def _check_keep(keep: Keep, full: VitStructure) -> None:
    def valid(indices: tuple[int, ...], size: int) -> bool:
        return bool(indices) and len(set(indices)) == len(indices) and all(0 <= i < size for i in indices)

    problems = [] if valid(keep.channels, full.width) else ["channels"]
    if not valid(keep.block_indices, full.depth):
        problems.append("blocks")
    for b in keep.blocks if not problems else ():
        source = full.blocks[b.index]
        if not valid(b.heads, source.heads) or len(b.dims) != len(b.heads):
            problems.append(f"block {b.index} heads")
        elif len({len(d) for d in b.dims}) != 1 or not all(valid(d, source.head_dim) for d in b.dims):
            problems.append(f"block {b.index} head dimensions")
        if not valid(b.neurons, source.mlp):
            problems.append(f"block {b.index} neurons")
    if problems:
        raise ConfigError(f"keep selection is not a sub-structure of the model: bad {', '.join(problems)}")


def _copy_norm(new: nn.LayerNorm, old: nn.LayerNorm, channels: torch.Tensor) -> None:
    new.weight.copy_(old.weight[channels])
    new.bias.copy_(old.bias[channels])


def _copy_linear(new: nn.Linear, old: nn.Linear, rows: torch.Tensor, cols: torch.Tensor) -> None:
    new.weight.copy_(old.weight[rows][:, cols])
    new.bias.copy_(old.bias[rows])
