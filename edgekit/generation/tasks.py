"""Sequence-to-sequence tasks defined in code, so that a small model can be trained and judged offline.

Each task maps a random source string to its target; ``examples(n, seed)`` is deterministic, and the
held-out split excludes every source of the training split.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

from edgekit.registry import Registry

_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    make: Callable[[random.Random], tuple[str, str]]

    def examples(self, count: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        rng = random.Random(seed)
        out: list[tuple[str, str]] = []
        seen = set(exclude)
        while len(out) < count:
            source, target = self.make(rng)
            if source in seen:
                continue
            seen.add(source)
            out.append((source, target))
        return out

    def split(self, train: int, test: int, seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Training and held-out pairs; no held-out source appears in training."""
        train_pairs = self.examples(train, seed)
        test_pairs = self.examples(test, seed + 1, frozenset(s for s, _ in train_pairs))
        return train_pairs, test_pairs


def _word(rng: random.Random, low: int = 3, high: int = 12) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(low, high)))


def _reverse(rng: random.Random) -> tuple[str, str]:
    word = _word(rng)
    return word, word[::-1]


def _sort(rng: random.Random) -> tuple[str, str]:
    word = _word(rng)
    return word, "".join(sorted(word))


def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 9999), rng.randint(0, 9999)
    return f"{a}+{b}", str(a + b)


TASKS: Registry[Task] = Registry("task")
TASKS.add("reverse", Task("reverse", "reverse a string of 3-12 letters and digits", _reverse))
TASKS.add("sort", Task("sort", "sort the characters of a string of 3-12 letters and digits", _sort))
TASKS.add("add", Task("add", "add two numbers below 10,000", _add))
