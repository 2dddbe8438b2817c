"""The structure of one shard: shrink the full ViT by a global Taylor ranking until it fits its budget.

A budget is a parameter count (the shard's share of the full model), the device's memory and a FLOP count (the
latency budget at the device's measured or declared GFLOP/s); any may be absent. Starting from the full model,
each step removes the one structure that costs the least importance per unit of the resource most over its
limit, among: the least important kept residual channel, and in every kept block its least important head, one
dimension of every head (each head its least important kept one), its least important MLP neuron, or the
whole block. Scores are the Taylor importances of ``prune.py``, all first-order loss changes and so comparable
across kinds; they are measured once on the full model. The ranking is global: a block whose heads matter
keeps them while another loses all but one. Every axis keeps at least one (one channel, one block, one head of
one dimension, one neuron); a budget even that cannot meet is a ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekit.errors import ConfigError
from edgekit.splitter.prune import BlockKeep, BlockStructure, Importance, Keep, VitShape, VitStructure


@dataclass(frozen=True)
class Budget:
    max_parameters: int | None = None  # of the feature extractor
    max_memory_bytes: int | None = None
    max_flops: int | None = None

    def limits(self, shape: VitShape) -> dict[str, tuple[Callable[[VitStructure], int], int]]:
        """resource name -> (its arithmetic, its limit), for the limits that are set."""
        table = {
            "parameters": (shape.parameters, self.max_parameters),
            "memory": (shape.memory_bytes, self.max_memory_bytes),
            "flops": (shape.flops, self.max_flops),
        }
        return {name: (fn, limit) for name, (fn, limit) in table.items() if limit is not None}

    def check_reachable(self, shape: VitShape) -> None:
        """Refuse, before any training, a budget that even the smallest sub-model exceeds."""
        smallest = shape.smallest()
        for name, (fn, limit) in self.limits(shape).items():
            if fn(smallest) > limit:
                raise ConfigError(
                    f"even the smallest sub-model (width 1, one block with one head of dimension 1 and one neuron) "
                    f"needs {_amount(name, fn(smallest))}, more than the {_amount(name, limit)} budget"
                )


@dataclass(frozen=True)
class SearchResult:
    keep: Keep
    binding: tuple[str, ...]  # the limits the search shrank for, in the order they bound; () if the full model fits
    steps: int

    @property
    def structure(self) -> VitStructure:
        return self.keep.structure


class _Block:
    """A kept block of the search state: its structures sorted most important first, and how many are kept."""

    def __init__(self, index: int, importance: Importance):
        self.index = index
        self.head_order = list(np.argsort(-importance.heads[index], kind="stable"))
        self.head_scores = importance.heads[index]
        dims = importance.head_dims[index]
        self.dim_orders = [list(np.argsort(-dims[h], kind="stable")) for h in range(dims.shape[0])]
        self.dim_scores = dims
        self.neuron_order = list(np.argsort(-importance.neurons[index], kind="stable"))
        self.neuron_scores = importance.neurons[index]
        self.head_dim = dims.shape[1]

    @property
    def structure(self) -> BlockStructure:
        return BlockStructure(len(self.head_order), self.head_dim, len(self.neuron_order))

    def shrink(self, kind: str) -> None:
        if kind == "head":
            self.head_order.pop()
        elif kind == "dim":
            self.head_dim -= 1
        else:
            self.neuron_order.pop()

    def dim_step_score(self) -> float:  # dropping the last kept dimension of every kept head
        return float(sum(self.dim_scores[h, self.dim_orders[h][self.head_dim - 1]] for h in self.head_order))

    def keep(self) -> BlockKeep:
        heads = sorted(int(h) for h in self.head_order)
        return BlockKeep(
            self.index, tuple(heads), tuple(tuple(sorted(int(d) for d in self.dim_orders[h][: self.head_dim]))
                                           for h in heads),
            tuple(sorted(int(n) for n in self.neuron_order)),
        )  # fmt: skip


def search_structure(shape: VitShape, importance: Importance, budget: Budget) -> SearchResult:
    """The kept structures of a shard within ``budget``, shrunk greedily by importance per resource saved."""
    budget.check_reachable(shape)
    state = _State(shape, importance)
    binding: list[str] = []
    steps = 0
    while True:
        current = state.structure()
        usage = {name: (fn(current), limit) for name, (fn, limit) in budget.limits(shape).items()}
        over = {name: used / limit for name, (used, limit) in usage.items() if used > limit}
        if not over:
            break
        name = max(over, key=over.get)
        if not binding or binding[-1] != name:
            binding.append(name)
        measure, _ = budget.limits(shape)[name]
        best: tuple[float, int, tuple[str, int]] | None = None
        for order, (score, move) in enumerate(state.moves()):
            saved = usage[name][0] - measure(state.structure(move))
            if saved > 0 and (best is None or max(score, 0.0) / saved < best[0]):
                best = (max(score, 0.0) / saved, order, move)
        if best is None:  # check_reachable makes this unreachable for a resource that shrinks with the model
            raise ConfigError(f"no smaller structure reduces the shard's {name} below its limit")
        state.apply(best[2])
        steps += 1
    return SearchResult(state.keep(), tuple(binding), steps)


class _State:
    """What the search has kept so far; a move is (kind, block position): one structure fewer."""

    def __init__(self, shape: VitShape, importance: Importance):
        self.importance = importance
        self.channels = list(np.argsort(-importance.channels, kind="stable"))  # most important first
        self.blocks = [_Block(i, importance) for i in range(shape.full().depth)]

    def moves(self) -> list[tuple[float, tuple[str, int]]]:
        """Every structure that could go next, with its importance."""
        moves = []
        if len(self.channels) > 1:
            moves.append((float(self.importance.channels[self.channels[-1]]), ("channel", -1)))
        for j, b in enumerate(self.blocks):
            if len(b.head_order) > 1:
                moves.append((float(b.head_scores[b.head_order[-1]]), ("head", j)))
            if b.head_dim > 1:
                moves.append((b.dim_step_score(), ("dim", j)))
            if len(b.neuron_order) > 1:
                moves.append((float(b.neuron_scores[b.neuron_order[-1]]), ("neuron", j)))
            if len(self.blocks) > 1:
                moves.append((float(self.importance.blocks[b.index]), ("block", j)))
        return moves

    def structure(self, move: tuple[str, int] | None = None) -> VitStructure:
        """The structure now, or after ``move``."""
        kind, at = move or ("", -1)
        blocks = []
        for j, b in enumerate(self.blocks):
            s = b.structure
            if j == at:
                if kind == "block":
                    continue
                s = BlockStructure(s.heads - (kind == "head"), s.head_dim - (kind == "dim"), s.mlp - (kind == "neuron"))
            blocks.append(s)
        return VitStructure(len(self.channels) - (kind == "channel"), tuple(blocks))

    def apply(self, move: tuple[str, int]) -> None:
        kind, at = move
        if kind == "channel":
            self.channels.pop()
        elif kind == "block":
            del self.blocks[at]
        else:
            self.blocks[at].shrink(kind)

    def keep(self) -> Keep:
        return Keep(tuple(sorted(int(c) for c in self.channels)), tuple(b.keep() for b in self.blocks))


def _amount(name: str, value: float) -> str:
    if name == "memory":
        return f"{value / 1e6:.2f} MB"
    if name == "flops":
        return f"{int(value):,} FLOPs"
    return f"{int(value):,} parameters"
