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


# Attention probabilities as the Quantizable Transformers paper offers them (docs/papers.md): plain softmax,
# clipped softmax (a head can output exact zeros without pushing logits to extremes), and gated attention (a
# per-head sigmoid gate on the output lets a head do nothing without attending to a sink token). Both remove
# the reason for the activation outliers that break per-tensor INT8; both must be trained with the change.
ATTENTION_KINDS = ("softmax", "clipped", "gated")


class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections and 3-D batched matmuls.

    ``attention="clipped"`` computes clip((1 - gamma) * softmax + gamma, 0, 1) with gamma = -clip_alpha / N
    (N tokens). With clip_alpha >= N / (N - 1) the uniform attention of a fresh model is clipped to exactly zero
    everywhere, no gradient reaches q and k, and training never starts (vit_digits: 7.8% after 30 epochs with
    alpha 2 or 4, 96.9% with 1.0, 96.7% with 0.5), hence the default of 1.0 rather than the paper's 2-4.
    ``"gated"`` multiplies each head's output by sigmoid(G_h(x_h)), G_h a Linear(dim / heads -> 1)
    over the head's slice of the block input.
    """

    def __init__(
        self, dim: int, heads: int, head_dim: int | None = None, attention: str = "softmax", clip_alpha: float = 1.0,
        scale: float | None = None,
    ):  # fmt: skip
        """``scale`` multiplies the queries (default head_dim^-0.5); a head-dim-pruned block keeps its original one."""
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention {attention!r} is not one of {', '.join(ATTENTION_KINDS)}")
        self.heads = heads
        self.head_dim = head_dim or dim // heads
        inner = self.heads * self.head_dim
        self.scale = scale if scale is not None else self.head_dim**-0.5
        self.attention, self.clip_alpha = attention, clip_alpha
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.proj = nn.Linear(inner, dim)
        if attention == "gated":
            if dim % heads:
                raise ValueError(f"gated attention slices the input per head: dim {dim} % heads {heads} != 0")
            # (heads, dim/heads, 1): one Linear(d -> 1) per head, applied as a bmm over the head axis
            self.gate_weight = nn.Parameter(torch.randn(heads, dim // heads, 1) * 0.02)
            # sigmoid(-0.5) = 0.38: the gate starts half-open, inside the paper's 0.25-0.5
            self.gate_bias = nn.Parameter(torch.full((heads, 1, 1), -0.5))

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        # (B, N, H*D) -> (B*H, N, D)
        return t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2).reshape(b * self.heads, n, self.head_dim)

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=-1)
        if self.attention == "clipped":
            gamma = -self.clip_alpha / logits.shape[-1]
            probs = torch.clamp((1.0 - gamma) * probs + gamma, 0.0, 1.0)
        return probs

    def _gate(self, x: torch.Tensor) -> torch.Tensor:
        """(B*H, N, 1) gates from each head's slice of ``x`` (B, N, dim)."""
        b, n, dim = x.shape
        slices = x.reshape(b * n, self.heads, dim // self.heads).transpose(0, 1)  # (H, B*N, dim/H)
        gates = torch.sigmoid(torch.bmm(slices, self.gate_weight) + self.gate_bias)  # (H, B*N, 1)
        return gates.reshape(self.heads, b, n).transpose(0, 1).reshape(b * self.heads, n, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x)[0]

    def attend(self, x: torch.Tensor, log_size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The block output and the keys (B, N, heads * head_dim), which token merging matches on.

        ``log_size`` (B, N, 1), the log of how many patches each token stands for, is added to every query's
        logit for that key (ToMe's proportional attention); None leaves the plain attention, op for op.
        """
        b, n, _ = x.shape
        q = self._split_heads(self.q(x)) * self.scale
        keys = self.k(x)
        k = self._split_heads(keys)
        v = self._split_heads(self.v(x))
        logits = torch.bmm(q, k.transpose(1, 2))  # (B*H, N, N)
        if log_size is not None:  # 4-D so that one bias row serves every head of its image
            logits = (logits.reshape(b, self.heads, n, n) + log_size.reshape(b, 1, 1, n)).reshape(b * self.heads, n, n)
        attn = self._probabilities(logits)
        out = torch.bmm(attn, v)  # (B*H, N, D)
        if self.attention == "gated":
            out = out * self._gate(x)
        out = out.reshape(b, self.heads, n, self.head_dim).transpose(1, 2).reshape(b, n, self.heads * self.head_dim)
        return self.proj(out), keys


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

    def __init__(
        self, dim: int, heads: int, mlp_hidden: int, head_dim: int | None = None, attention: str = "softmax",
        clip_alpha: float = 1.0, scale: float | None = None,
    ):  # fmt: skip
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim, attention, clip_alpha, scale)
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


def step_slice(x: torch.Tensor, index: int, dim: int) -> torch.Tensor:
    """``x`` at ``index`` along ``dim``, keeping the dim; ``x`` itself when that dim has length 1.

    Time loops (LIF neurons, the LMU recurrence, KV-cache writes) slice one step at a time: a slice lowers into
    XNNPACK where a select does not, and a slice that covers the whole dim lowers to an ``alias_copy`` it leaves out.
    """
    return x if x.shape[dim] == 1 else x.narrow(dim, index, 1)


def nontrivial_norm_statistics(module: nn.Module, seed: int = 0) -> None:
    """Random running statistics for every BatchNorm, so that a fresh model already exercises the BN arithmetic
    (and its folding) in every format instead of an identity."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
