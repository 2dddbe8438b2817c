"""SLAB (Guo et al., ICML 2024): a DeiT-style transformer with progressive re-parameterized BatchNorm
(PRepBN) and simplified linear attention (SLA), plus its LayerNorm twin.

- **PRepBN** trains as ``lam * LN(x) + (1 - lam) * RepBN(x)`` with ``lam`` decaying linearly from 1 to
  0 over the first ``decay_fraction`` of the training steps (the trainer calls ``on_train_step``);
  at inference only ``RepBN(x) = BN(x) + alpha * x`` remains, and the export folds it into the next
  Linear (or into a per-channel multiply-add), so no normalisation op is left at all.
- **SLA**: q, k, v from one projection; a learned positional encoding added to k; ReLU on q and k;
  per head ``out_i = q_i (K^T V / N) / (q_i . mean_j k_j + eps)`` plus a depthwise conv of V over the
  token grid; then the output projection. Dividing numerator and denominator by N is our choice: the
  same function as the paper's sums, with magnitudes that stay comfortable in fp32.
- No class token: tokens are mean-pooled (as a 4-D pool over the grid, the form XNNPACK accepts), so
  every token sits on the grid the depthwise conv needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.models.layers import LayerNorm, Mlp, init_linear_weights
from edgekit.models.spec import ModelSpec, image_classifier_spec, register_model
from edgekit.transforms.reparam import RepBN


class PRepBN(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.ln = LayerNorm(dim)
        self.repbn = RepBN(dim)
        self.register_buffer("lam", torch.ones(()))  # persistent: a checkpoint resumes mid-schedule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # both branches always run in training so BN statistics keep up
            return self.lam * self.ln(x) + (1.0 - self.lam) * self.repbn(x)
        return self.repbn(x)


class SimplifiedLinearAttention(nn.Module):
    def __init__(self, dim: int, heads: int, grid: int, dwc_kernel: int = 5, eps: float = 1e-6):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.head_dim, self.grid, self.eps = dim, heads, dim // heads, grid, eps
        n = grid * grid
        self.inv_tokens = 1.0 / n
        self.qkv = nn.Linear(dim, 3 * dim)
        self.pos = nn.Parameter(torch.zeros(1, n, dim))
        self.dwc = nn.Conv2d(self.head_dim, self.head_dim, dwc_kernel, padding=dwc_kernel // 2, groups=self.head_dim)
        self.proj = nn.Linear(dim, dim)
        # mean over tokens as a Linear with a 1/N weight: XNNPACK takes linear, not a 3-D mean
        self.register_buffer("_token_mean", torch.full((1, n), 1.0 / n), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x)[0]

    def attend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block output and the keys (B, N, C), which token merging matches on."""
        b, n, c = x.shape
        h, d = self.heads, self.head_dim
        qkv = self.qkv(x)

        def heads_first(t: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B*H, N, D)
            return t.reshape(b, n, h, d).transpose(1, 2).reshape(b * h, n, d)

        q = heads_first(F.relu(qkv[..., :c]))
        keys = F.relu(qkv[..., c : 2 * c] + self.pos)
        k = heads_first(keys)
        v = heads_first(qkv[..., 2 * c :])
        kv = torch.bmm(k.transpose(1, 2), v) * self.inv_tokens  # (B*H, D, D); a Python float, not n from .shape
        k_mean = F.linear(k.transpose(1, 2), self._token_mean)  # (B*H, D, 1)
        # a division, not x * (1 / d): XNNPACK takes div but leaves reciprocal on portable kernels
        out = torch.bmm(q, kv) / (torch.bmm(q, k_mean) + self.eps)  # (B*H, N, D) / (B*H, N, 1)
        local = self.dwc(v.transpose(1, 2).reshape(b * h, d, self.grid, self.grid)).reshape(b * h, d, n)
        out = out + local.transpose(1, 2)
        return self.proj(out.reshape(b, h, n, d).transpose(1, 2).reshape(b, n, c)), keys


class SLABBlock(nn.Module):
    def __init__(self, dim: int, heads: int, grid: int, mlp_ratio: float, norm: str, dwc_kernel: int):
        super().__init__()
        self.norm1 = _norm(norm, dim)
        self.attn = SimplifiedLinearAttention(dim, heads, grid, dwc_kernel)
        self.norm2 = _norm(norm, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _norm(kind: str, dim: int) -> nn.Module:
    if kind == "prepbn":
        return PRepBN(dim)
    if kind == "layernorm":
        return LayerNorm(dim)
    raise ValueError(f"norm must be 'prepbn' or 'layernorm', not {kind!r}")


class SLABDeiT(nn.Module):
    def __init__(
        self, img_size, patch_size, in_chans, num_classes, dim, depth, heads, mlp_ratio, norm, dwc_kernel,
        decay_fraction,
    ):  # fmt: skip
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.grid = img_size // patch_size
        self.decay_fraction = decay_fraction
        self.patch_embed = nn.Conv2d(in_chans, dim, patch_size, patch_size)
        self.pos_embed = nn.Parameter(torch.randn(1, self.grid * self.grid, dim) * 0.02)
        self.blocks = nn.Sequential(
            *[SLABBlock(dim, heads, self.grid, mlp_ratio, norm, dwc_kernel) for _ in range(depth)]
        )
        self.norm = _norm(norm, dim)
        self.head = nn.Linear(dim, num_classes)
        self.apply(init_linear_weights)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, N, C)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(self.embed(x)))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The mean of the last block's tokens over the grid, (B, C)."""
        tokens = self.norm(tokens)
        b, n, c = tokens.shape
        grid = tokens.transpose(1, 2).reshape(b, c, self.grid, self.grid)
        return grid.mean(dim=(2, 3), keepdim=True).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def on_train_step(self, step: int, total_steps: int) -> None:
        """The PRepBN schedule: lam = 1 -> 0 linearly over the first ``decay_fraction`` of training."""
        lam = max(0.0, 1.0 - step / max(1.0, self.decay_fraction * total_steps))
        for m in self.modules():
            if isinstance(m, PRepBN):
                m.lam.fill_(lam)


def _slab_spec(name: str, **config) -> ModelSpec:
    return image_classifier_spec(name, "slab", SLABDeiT(**config), config)


@register_model("slab_deit_tiny", family="slab", description="SLAB DeiT-T: PRepBN + simplified linear attention")
def slab_deit_tiny(
    img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000, dim: int = 192,
    depth: int = 12, heads: int = 3, mlp_ratio: float = 4.0, norm: str = "prepbn", dwc_kernel: int = 5,
    decay_fraction: float = 0.7,
) -> ModelSpec:  # fmt: skip
    return _slab_spec("slab_deit_tiny", **locals())


@register_model("slab_deit_tiny_ln", family="slab", description="slab_deit_tiny's LayerNorm twin (same size)")
def slab_deit_tiny_ln(
    img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000, dim: int = 192,
    depth: int = 12, heads: int = 3, mlp_ratio: float = 4.0, norm: str = "layernorm", dwc_kernel: int = 5,
    decay_fraction: float = 0.7,
) -> ModelSpec:  # fmt: skip
    return _slab_spec("slab_deit_tiny_ln", **locals())
