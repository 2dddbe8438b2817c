"""Token merging applied to a model family, and the multi-rate spec ``edgekit export --token-merge`` lowers.

- **ViT** (``vit_*``): in every block, between attention and the MLP, ``r`` tokens merge into others (the class
  token never); sizes are carried from block to block and attention adds log(size) to each key's logit.
- **SLAB** (``slab_*``): simplified linear attention adds a positional encoding per grid cell to its keys and
  runs a depthwise convolution over the token grid, so its attention needs all the tokens in place. Tokens
  merge for the MLP only (about two thirds of a block's multiply-adds) and every merged output is copied back
  to the tokens it stands for before the next block, as ToMe for Stable Diffusion does; proportional attention
  does not apply (attention always sees single patches).
- **TinyViT**: its first stage is convolutional and later stages attend in windows over a fixed grid, with
  convolutions between them: there is no free token set to merge, and the export says so.

Each rate is a graph of its own (``r0``, ``r4`` ...); the r = 0 graph is the model itself, op for op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.errors import UnsupportedOptionError
from edgekit.layouts import MergeRate, TokenMergeLayout
from edgekit.models.spec import ModelSpec, SubGraph
from edgekit.models.token_merge import BipartiteMerge, merge_schedule


class _UnitSizes(nn.Module):
    """Every token's size, 1, as a (B, N, 1) tensor shaped by the tokens themselves (one per image in a batch)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("_zero", torch.zeros(1, dim), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.linear(tokens, self._zero) + 1.0


class MergingViT(nn.Module):
    """A VisionTransformer (its parameters shared, not copied) merging ``r`` tokens per block."""

    def __init__(self, vit: nn.Module, r: int):
        super().__init__()
        self.vit, self.r = vit, r
        self.schedule = merge_schedule(vit.num_patches + 1, len(vit.blocks), r, protected=1, carries=True)
        pairs = zip(self.schedule, vit.blocks, strict=True)
        self.merges = nn.ModuleList(BipartiteMerge(n, r, 1, b.attn.heads, b.attn.head_dim) for n, b in pairs if r)
        self.sizes = _UnitSizes(vit.cls_token.shape[-1])

    @property
    def mlp_tokens(self) -> tuple[int, ...]:
        return tuple(n - self.r for n in self.schedule)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not self.r:
            return self.vit(image)
        x = self.vit.embed(image)
        size = self.sizes(x)
        for block, merge in zip(self.vit.blocks, self.merges, strict=True):
            out, keys = block.attn.attend(block.norm1(x), torch.log(size))
            x, size = merge.merge(x + out, size, merge.match(keys))
            x = x + block.mlp(block.norm2(x))
        return self.vit.head(self.vit.pool(x))


class MergingSLAB(nn.Module):
    """A SLABDeiT (parameters shared) whose MLPs see ``r`` fewer tokens per block; see the module doc."""

    def __init__(self, slab: nn.Module, r: int):
        super().__init__()
        self.slab, self.r = slab, r
        tokens = slab.grid * slab.grid
        self.schedule = merge_schedule(tokens, len(slab.blocks), r, protected=0, carries=False)
        self.merges = nn.ModuleList(
            BipartiteMerge(tokens, r, 0, b.attn.heads, b.attn.head_dim) for b in slab.blocks if r
        )
        self.sizes = _UnitSizes(slab.pos_embed.shape[-1])

    @property
    def mlp_tokens(self) -> tuple[int, ...]:
        return tuple(n - self.r for n in self.schedule)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not self.r:
            return self.slab(image)
        x = self.slab.embed(image)
        size = self.sizes(x)
        for block, merge in zip(self.slab.blocks, self.merges, strict=True):
            out, keys = block.attn.attend(block.norm1(x))
            x = x + out
            matching = merge.match(keys)
            merged, _ = merge.merge(x, size, matching)
            x = x + merge.unmerge(block.mlp(block.norm2(merged)), matching)
        return self.slab.head(self.slab.pool(x))


@dataclass(frozen=True)
class MergeFamily:
    """How a model family merges tokens, or why it cannot (``wrap`` None)."""

    wrap: Callable[[nn.Module, int], nn.Module] | None
    why_not: str = ""


MERGE_FAMILIES: dict[str, MergeFamily] = {
    "vit": MergeFamily(MergingViT),
    "slab": MergeFamily(MergingSLAB),
    "tinyvit": MergeFamily(
        None, "TinyViT's convolutional first stage and windowed attention over a fixed grid leave no token set to merge"
    ),  # fmt: skip
}


def parse_rates(rates: str | Iterable[int]) -> tuple[int, ...]:
    """``"0,4,8"`` or [0, 4, 8] -> (0, 4, 8): whole numbers >= 0, each once, in increasing order."""
    items = [p.strip() for p in rates.split(",") if p.strip()] if isinstance(rates, str) else list(rates)
    try:
        values = [int(v) for v in items]
    except (TypeError, ValueError):
        raise UnsupportedOptionError("--token-merge", rates, ["comma-separated whole numbers, e.g. 0,4,8"]) from None
    if not values or any(v < 0 for v in values) or len(set(values)) != len(values):
        raise UnsupportedOptionError("--token-merge", rates, ["distinct whole numbers >= 0, e.g. 0,4,8"])
    return tuple(sorted(values))


def merging_module(spec: ModelSpec, r: int) -> nn.Module:
    """``spec``'s module merging ``r`` tokens per block (r = 0: the same function, op for op)."""
    family = MERGE_FAMILIES.get(spec.family)
    if family is None or family.wrap is None:
        reason = f" ({family.why_not})" if family else ""
        supported = [f"{name}_* models" for name, f in MERGE_FAMILIES.items() if f.wrap]
        raise UnsupportedOptionError(f"--token-merge for {spec.name}{reason}", r, supported)
    return family.wrap(spec.module, r).eval()


def token_merge_spec(spec: ModelSpec, rates: str | Iterable[int], evaluate: bool = False) -> ModelSpec:
    """``spec`` with one graph per merge rate (``r0``, ``r4`` ...) and the rates' layout in its extras.

    ``evaluate``: record each rate's held-out accuracy on the model's dataset (only meaningful for trained
    weights; merging is training-free, so the numbers say what each rate costs).
    """
    if spec.graphs:
        raise UnsupportedOptionError(f"--token-merge for {spec.name} (already several graphs)", rates, ["none"])
    values = parse_rates(rates)
    modules = {r: merging_module(spec, r) for r in values}
    split = None
    if evaluate and spec.dataset:
        from edgekit.data import load_dataset

        split = load_dataset(spec.dataset, tuple(spec.example_inputs[0].shape))
    entries = []
    for r, module in modules.items():
        accuracy = None
        if split is not None:
            from edgekit.training import evaluate_module

            accuracy = evaluate_module(replace(spec, module=module), split)
        entries.append(MergeRate(r, f"r{r}", module.mlp_tokens, accuracy))
    layout = TokenMergeLayout(tuple(entries), spec.dataset if split is not None else None)
    graphs = tuple(
        SubGraph(f"r{r}", m, spec.example_inputs, spec.input_names, spec.output_names) for r, m in modules.items()
    )
    return replace(spec, graphs=graphs, extras={**spec.extras, "token_merge": layout.to_json()})
