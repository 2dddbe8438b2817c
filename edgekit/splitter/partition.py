"""Class partitions: which classes each sub-model is responsible for.

Every strategy returns N disjoint, non-empty subsets covering all C classes, each of at most
ceil(C / N) classes, so sub-models carry comparable work.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edgekit.errors import ConfigError
from edgekit.registry import Registry

Partition = tuple[tuple[int, ...], ...]
PartitionFn = Callable[[int, int, "np.ndarray | None", int], Partition]

PARTITIONS: Registry[PartitionFn] = Registry("class partition")


def partition_classes(
    strategy: str, num_classes: int, parts: int, confusion: np.ndarray | None = None, seed: int = 0
) -> Partition:
    if not 1 <= parts <= num_classes:
        raise ConfigError(f"cannot split {num_classes} classes into {parts} sub-models (need 1 <= N <= {num_classes})")
    result = PARTITIONS.get(strategy)(num_classes, parts, confusion, seed)
    assert sorted(c for subset in result for c in subset) == list(range(num_classes)), result  # internal invariant
    return result


@PARTITIONS.register("contiguous")
def contiguous(num_classes: int, parts: int, confusion: np.ndarray | None, seed: int) -> Partition:
    """Classes 0..k-1 to the first sub-model, and so on."""
    return tuple(tuple(int(c) for c in chunk) for chunk in np.array_split(np.arange(num_classes), parts))


@PARTITIONS.register("balanced")
def balanced(num_classes: int, parts: int, confusion: np.ndarray | None, seed: int) -> Partition:
    """A seeded random assignment with sizes differing by at most one."""
    order = np.random.default_rng(seed).permutation(num_classes)
    return tuple(tuple(sorted(int(c) for c in chunk)) for chunk in np.array_split(order, parts))


@PARTITIONS.register("confusion")
def by_confusion(num_classes: int, parts: int, confusion: np.ndarray | None, seed: int) -> Partition:
    """Keep the class pairs the full model confuses most inside one sub-model.

    Greedy agglomeration: pairs in order of symmetric confusion merge their groups while the merged
    group fits the size cap ceil(C / N); the groups are then packed, largest first, into the emptiest
    of N bins (a group that fits nowhere is spread member by member).
    """
    if confusion is None:
        raise ConfigError("the confusion partition needs the full model's confusion matrix")
    cap = math.ceil(num_classes / parts)
    sym = confusion + confusion.T
    np.fill_diagonal(sym, 0)
    group = list(range(num_classes))
    members = {c: [c] for c in range(num_classes)}
    pairs = sorted(((sym[a, b], a, b) for a in range(num_classes) for b in range(a + 1, num_classes)), reverse=True)
    for weight, a, b in pairs:
        ga, gb = group[a], group[b]
        if weight <= 0 or ga == gb or len(members[ga]) + len(members[gb]) > cap:
            continue
        for c in members.pop(gb):
            group[c] = ga
            members[ga].append(c)
    bins: list[list[int]] = [[] for _ in range(parts)]
    for g in sorted(members.values(), key=len, reverse=True):
        room = [b for b in bins if len(b) + len(g) <= cap]
        if room:
            min(room, key=len).extend(g)
            continue
        for c in g:
            min((b for b in bins if len(b) < cap), key=len).append(c)
    # A bin can stay empty when groups pack tightly (10 classes as 4+4+2 into 4 bins): move classes over.
    for empty in [b for b in bins if not b]:
        empty.append(max(bins, key=len).pop())
    return tuple(tuple(sorted(b)) for b in bins)
