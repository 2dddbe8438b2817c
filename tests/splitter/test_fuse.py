from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import BundleError
from edgekit.splitter.fuse import FusionHead, train_fusion


@pytest.fixture(scope="module")
def separable():
    """Two shards' features where each shard alone identifies half of the four classes."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 600)
    a = rng.standard_normal((600, 6)).astype(np.float32) * 0.3
    b = rng.standard_normal((600, 6)).astype(np.float32) * 0.3
    a[np.arange(600), labels] += 3 * (labels < 2)
    b[np.arange(600), labels] += 3 * (labels >= 2)
    return [a, b], labels


def test_fusion_learns_from_both_shards_and_degrades_gracefully(separable):
    features, labels = separable
    head = train_fusion(features, labels, 4, hidden=32, epochs=30)
    accuracy = (head.logits(features).argmax(-1) == labels).mean()
    assert accuracy > 0.97
    # without shard b, classes 2 and 3 are told apart only by chance, classes 0 and 1 still well
    without_b = head.logits([features[0], None]).argmax(-1)
    assert (without_b[labels < 2] == labels[labels < 2]).mean() > 0.9
    with pytest.raises(ValueError, match="at least one"):
        head.logits([None, None])


def test_save_load_is_exact_and_refuses_pickles(separable, tmp_path):
    features, labels = separable
    head = train_fusion(features, labels, 4, hidden=8, epochs=2)
    loaded = FusionHead.load(head.save(tmp_path / "fusion.npz"))
    np.testing.assert_array_equal(loaded.logits(features), head.logits(features))
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "evil.npz").write_bytes((tmp_path / "evil.npy").read_bytes())
    with pytest.raises(BundleError, match="cannot read fusion weights"):
        FusionHead.load(tmp_path / "evil.npz")
    with pytest.raises(BundleError, match="cannot read fusion weights"):
        FusionHead.load(tmp_path / "absent.npz")
