"""The fusion head: a small MLP over the concatenated sub-model features, run by the coordinator in numpy.

Features are standardised with training-split statistics, so a missing shard (a worker that is down,
with ``--degraded-ok``) enters as zeros, its training-set mean. The head is trained with whole shards
dropped at random (``shard_dropout``), which is what lets a degraded answer stay useful.
Stored as ``fusion.npz`` (plain arrays, read with ``allow_pickle=False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import BundleError


@dataclass(frozen=True)
class FusionHead:
    shard_dims: tuple[int, ...]
    mean: np.ndarray
    std: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.w2.shape[1])

    def logits(self, features: Sequence[np.ndarray | None]) -> np.ndarray:
        """(B, C) logits from one (B, dim) feature array per shard, in plan order; None = shard missing."""
        if len(features) != len(self.shard_dims):
            raise ValueError(f"fusion expects {len(self.shard_dims)} feature arrays, got {len(features)}")
        batch = next((f.shape[0] for f in features if f is not None), None)
        if batch is None:
            raise ValueError("fusion needs at least one shard's features")
        parts = []
        for dim, f in zip(self.shard_dims, features, strict=True):
            parts.append(np.full((batch, dim), np.nan, np.float32) if f is None else f.reshape(batch, dim))
        x = (np.concatenate(parts, axis=1).astype(np.float32) - self.mean) / self.std
        x = np.nan_to_num(x, nan=0.0)
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        return hidden @ self.w2 + self.b2

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("wb") as fh:  # np.savez on a path would append .npz to a name without it
            np.savez(
                fh, shard_dims=np.asarray(self.shard_dims, np.int64), mean=self.mean, std=self.std,
                w1=self.w1, b1=self.b1, w2=self.w2, b2=self.b2,
            )  # fmt: skip
        return path

    @classmethod
    def load(cls, path: str | Path) -> FusionHead:
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("shard_dims", "mean", "std", "w1", "b1", "w2", "b2")}
        except (OSError, ValueError, KeyError) as exc:
            raise BundleError(f"cannot read fusion weights {path}: {exc}") from None
        dims = tuple(int(d) for d in arrays.pop("shard_dims"))
        total = sum(dims)
        w1, w2 = arrays["w1"], arrays["w2"]
        if arrays["mean"].shape != (total,) or w1.shape[0] != total or w1.shape[1] != w2.shape[0]:
            raise BundleError(f"fusion weights {path} are inconsistent (feature dims {dims}, w1 {w1.shape})")
        return cls(dims, **{k: v.astype(np.float32) for k, v in arrays.items()})


def train_fusion(
    shard_features: Sequence[np.ndarray],
    labels: np.ndarray,
    num_classes: int,
    hidden: int = 128,
    epochs: int = 60,
    shard_dropout: float = 0.15,
    seed: int = 0,
) -> FusionHead:
    """Fit the fusion MLP on training-split features (one (n, dim) array per shard)."""
    import torch
    import torch.nn.functional as F

    dims = tuple(int(f.shape[1]) for f in shard_features)
    x = np.concatenate(shard_features, axis=1).astype(np.float32)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(labels.astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes)
    )
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=3e-3, weight_decay=1e-2)
    bounds = np.cumsum((0, *dims))
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            batch = xt[idx].clone()
            if shard_dropout > 0 and len(dims) > 1:
                drop = torch.rand(len(idx), len(dims), generator=generator) < shard_dropout
                for s in range(len(dims)):
                    batch[drop[:, s], bounds[s] : bounds[s + 1]] = 0.0
            loss = F.cross_entropy(mlp(batch), yt[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    first, second = mlp[0], mlp[2]
    detach = lambda t: t.detach().numpy().astype(np.float32)  # noqa: E731
    return FusionHead(
        dims, mean.astype(np.float32), std.astype(np.float32),
        detach(first.weight.T), detach(first.bias), detach(second.weight.T), detach(second.bias),
    )  # fmt: skip
