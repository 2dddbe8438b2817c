"""Transformer building blocks written so that every op lowers to a delegate.

ExecuTorch's XNNPACK partitioner (1.5.1) leaves several common spellings on slow portable
kernels: ``native_layer_norm``, ``mean`` over the last dim of a 3-D tensor, ``split``/``select``
(q, k, v = qkv.unbind(...)) and the identity ``expand`` that a 4-D ``@`` inserts. The modules
below compute the same functions with linear layers, reshapes and 3-D ``bmm`` instead. (The ONNX
exporter traces LayerNorm as the native op, inside ``native_layer_norm()``: ONNX Runtime fuses it.)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_NATIVE_LAYER_NORM = contextvars.ContextVar("edgekit_native_layer_norm", default=False)


@contextlib.contextmanager
def native_layer_norm() -> Iterator[None]:
    """Trace :class:`LayerNorm` as the framework's own op, for exporters whose runtimes fuse it."""
    token = _NATIVE_LAYER_NORM.set(True)
    try:
        yield
    finally:
        _NATIVE_LAYER_NORM.reset(token)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dim, with the two means taken as a matmul by a 1/C vector.

    Same parameters and state-dict keys as ``nn.LayerNorm`` (checkpoints load unchanged).
    """

    fx_leaf = True  # BatchNorm folding keeps it whole, so the spelling is chosen when the exporter traces

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim, eps=eps)
        self.register_buffer("_mean_weight", torch.full((1, dim), 1.0 / dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _NATIVE_LAYER_NORM.get():
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        centred = x - F.linear(x, self._mean_weight)
        var = F.linear(centred * centred, self._mean_weight)
        return centred * torch.rsqrt(var + self.eps) * self.weight + self.bias


class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections and 3-D batched matmuls."""

    def __init__(self, dim: int, heads: int, head_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim or dim // heads
        inner = self.heads * self.head_dim
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.proj = nn.Linear(inner, dim)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        # (B, N, H*D) -> (B*H, N, D)
        return t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2).reshape(b * self.heads, n, self.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = self._split_heads(self.q(x)) * self.scale
        k = self._split_heads(self.k(x))
        v = self._split_heads(self.v(x))
        attn = torch.bmm(q, k.transpose(1, 2)).softmax(dim=-1)  # (B*H, N, N)
        out = torch.bmm(attn, v)  # (B*H, N, D)
        out = out.reshape(b, self.heads, n, self.head_dim).transpose(1, 2).reshape(b, n, self.heads * self.head_dim)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, head_dim: int | None = None):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim)
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_linear_weights(module: nn.Module) -> None:
    """ViT-style initialisation for ``model.apply``: truncated-normal Linear weights (std 0.02), zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
