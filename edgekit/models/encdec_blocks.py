"""The blocks the encoder-decoder families share (the seq2seq SLM, T5, BART): RMS norm, rotary embeddings,
grouped-query attention as 3-D products, additive masks, and the fixed-length KV cache written by one-hot rows.

Each is written for export: constants built in Python, float arithmetic instead of integer comparisons,
gathers or scatters, so that every runtime (and XNNPACK) takes the whole graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.models.layers import step_slice


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` over the last dim; the mean of squares as a matmul by a 1/d column (delegates
    take a linear where they leave a mean over the last dim of a 3-D tensor)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.register_buffer("mean_weight", torch.full((1, dim), 1.0 / dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(F.linear(x * x, self.mean_weight) + self.eps) * self.weight


def rotary(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (T, head_dim) for float positions (T,).

    The frequencies are a constant built in Python (duplicated for the two halves), so an exported graph holds
    a multiply and two trig ops, not a power, an arange and a concat that XNNPACK would leave out.
    """
    freqs = [theta ** (-2.0 * (i % (head_dim // 2)) / head_dim) for i in range(head_dim)]
    angles = positions.reshape(-1, 1) * torch.tensor(freqs, dtype=torch.float32).reshape(1, -1)
    return torch.cos(angles), torch.sin(angles)


def rotate_half_weight(head_dim: int) -> torch.Tensor:
    """W with linear(x, W) = [-x2, x1] for x = [x1, x2]: the rotate-half as a constant linear layer, built in
    Python (in-place construction in the graph, or slices + cat, would be ops XNNPACK leaves out)."""
    half = head_dim // 2
    rows = [[0.0] * head_dim for _ in range(head_dim)]
    for i in range(half):
        rows[i][half + i] = -1.0  # output i = -x2[i]
        rows[half + i][i] = 1.0  # output half + i = x1[i]
    return torch.tensor(rows, dtype=torch.float32)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotate_half: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, D) by the tables (T, D): x cos + rotate_half(x) sin (``rotate_half``: the constant weight
    of :func:`rotate_half_weight`, held as a module buffer so that XNNPACK takes the product as a linear layer)."""
    return x * cos + F.linear(x, rotate_half) * sin


def float_range(start: int, stop: int) -> torch.Tensor:
    """A float constant start..stop-1 (built in Python: an arange would be an op XNNPACK leaves out)."""
    return torch.tensor([float(i) for i in range(start, stop)], dtype=torch.float32)


def grouped_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kv_heads: int,
    scale: float,
    mask: torch.Tensor | None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale + bias + mask) v for queries (B, H, Tq, D) and keys/values (B, kv_heads, Tk, D),
    merged back to (B, Tq, H * D). ``mask`` is additive, (B, 1, Tk) (the same for every query: padding, or a
    one-token decode step) or (B, Tq, Tk); ``bias`` (1 or B, H, Tq, Tk) is per head (T5's position bias)."""
    b, heads, tq, d = q.shape
    tk, group = k.shape[2], heads // kv_heads
    # the query heads of one group share their key/value head: fold the group into the query axis, and
    # batch and KV heads into the bmm batch (3-D products: XNNPACK leaves 4-D ones with expand copies)
    q = q.reshape(b * kv_heads, group * tq, d)
    k3, v3 = k.reshape(b * kv_heads, tk, d), v.reshape(b * kv_heads, tk, d)
    scores = torch.bmm(q, k3.transpose(1, 2))  # (B * kv_heads, group * Tq, Tk)
    if scale != 1.0:
        scores = scores * scale
    if bias is not None:  # query head h = kv head * group + g: the (B, H, Tq, Tk) view of the scores
        scores = (scores.reshape(b, heads, tq, tk) + bias).reshape(b * kv_heads, group * tq, tk)
    if mask is not None and mask.shape[1] == 1:
        scores = (scores.reshape(b, heads * tq, tk) + mask).reshape(b * kv_heads, group * tq, tk)
    elif mask is not None:
        scores = scores.reshape(b, kv_heads, group, tq, tk) + mask.reshape(mask.shape[0], 1, 1, tq, tk)
        scores = scores.reshape(b * kv_heads, group * tq, tk)
    out = torch.bmm(torch.softmax(scores, dim=-1), v3)  # (B * kv_heads, group * Tq, D)
    return out.reshape(b, heads, tq, d).transpose(1, 2).reshape(b, tq, heads * d)


NEG_INF = -1e9  # additive mask value: finite, so a fully masked row gives a uniform softmax, not NaN


def padding_mask(lengths_mask: torch.Tensor) -> torch.Tensor:
    """Additive key mask (B, 1, S) from a (B, S) float mask of 1 (token) / 0 (padding)."""
    return ((1.0 - lengths_mask) * NEG_INF).reshape(lengths_mask.shape[0], 1, lengths_mask.shape[1])


def causal_mask(steps: int) -> torch.Tensor:
    return torch.triu(torch.full((steps, steps), NEG_INF), diagonal=1)


def cache_plan(position: torch.Tensor, tokens: int, slots: int):
    """For ``tokens`` new tokens from ``position`` (a float (1,) tensor): the one-hot write rows (tokens, slots),
    the additive visibility mask (1, tokens, slots) (a token sees the slots up to its own) and the tokens'
    positions (tokens, 1).

    Built from float arithmetic on constants (relu(1 - |slot - p|) is exactly one-hot for integer p), so the
    graph needs no integer comparison, cast or arange.
    """
    steps = position.reshape(1, 1) + float_range(0, tokens).reshape(-1, 1)  # (K, 1)
    index = float_range(0, slots).reshape(1, slots)
    write = torch.relu(1.0 - torch.abs(index - steps))
    visible = (torch.clamp(index - steps, 0.0, 1.0) * NEG_INF).reshape(1, tokens, slots)
    return write, visible, steps


def write_cache(
    cache: tuple[torch.Tensor, torch.Tensor] | None, k: torch.Tensor, v: torch.Tensor, write: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cache (B, kv_heads, slots, D) with the new tokens' keys/values (B, kv_heads, K, D) in their slots.

    A one-hot blend rather than indexing: no data-dependent gather or scatter, so every runtime can run it,
    and the cache keeps its fixed shape.
    """
    count, slots = write.shape
    places = [step_slice(write, i, 0).reshape(1, 1, slots, 1) for i in range(count)]
    keep = 1.0 - sum(places[1:], places[0])
    # a broadcast multiply per new token (a decode step has one): XNNPACK mis-sizes a 2-D @ 4-D product.
    # No cache (a prefill from nothing): the new keys/values alone, no zero tensor for the graph to materialise.
    new_k = new_v = None
    if cache is not None:
        new_k, new_v = cache[0] * keep, cache[1] * keep
    for i, place in enumerate(places):
        add_k, add_v = place * step_slice(k, i, 2), place * step_slice(v, i, 2)
        new_k = add_k if new_k is None else new_k + add_k
        new_v = add_v if new_v is None else new_v + add_v
    return new_k, new_v
