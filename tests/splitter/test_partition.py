from __future__ import annotations

import math

import numpy as np
import pytest

from edgekit.errors import ConfigError, UnknownNameError
from edgekit.splitter.partition import PARTITIONS, partition_classes


@pytest.mark.parametrize("strategy", PARTITIONS.names())
@pytest.mark.parametrize("classes, parts", [(10, 1), (10, 2), (10, 3), (10, 4), (7, 7), (100, 6)])
def test_partitions_cover_every_class_once_in_balanced_parts(strategy, classes, parts):
    confusion = np.random.default_rng(classes * parts).integers(0, 20, (classes, classes))
    subsets = partition_classes(strategy, classes, parts, confusion)
    assert len(subsets) == parts
    assert sorted(c for s in subsets for c in s) == list(range(classes))
    assert all(1 <= len(s) <= math.ceil(classes / parts) for s in subsets)


def test_confusion_partition_keeps_the_most_confused_pairs_together():
    confusion = np.zeros((10, 10), np.int64)
    confusion[3, 8] = 40  # the full model mistakes 3 for 8 most
    confusion[1, 7] = 25
    confusion[4, 9] = 10
    subsets = partition_classes("confusion", 10, 3, confusion)
    together = lambda a, b: any(a in s and b in s for s in subsets)  # noqa: E731
    assert together(3, 8) and together(1, 7) and together(4, 9)
    assert not together(3, 8) or not together(3, 1)  # different heavy pairs are not forced into one part


def test_balanced_partition_is_seeded():
    assert partition_classes("balanced", 10, 3, seed=1) == partition_classes("balanced", 10, 3, seed=1)
    assert partition_classes("balanced", 10, 3, seed=1) != partition_classes("balanced", 10, 3, seed=2)


def test_partition_errors():
    with pytest.raises(ConfigError, match="into 11 sub-models"):
        partition_classes("balanced", 10, 11)
    with pytest.raises(UnknownNameError, match="Did you mean .balanced."):
        partition_classes("balance", 10, 2)
    with pytest.raises(ConfigError, match="confusion matrix"):
        partition_classes("confusion", 10, 2, None)
