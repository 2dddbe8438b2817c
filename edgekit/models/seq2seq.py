"""Encoder-decoder small language models ("Return of the Encoder", 2025) and their decoder-only twin.

Pre-RMSNorm blocks with a final RMSNorm on each stack, grouped-query attention, rotary position embeddings
on self-attention only (encoder positions centred on the middle of the source, decoder positions 0..T-1),
GELU feed-forward layers with biases, and one embedding table shared by the encoder input, the decoder
input and the LM head.

Besides the teacher-forced ``forward(src, tgt)`` used for training, the model runs the way a device does:
``encode`` once, ``cross_kv`` once per request (the cross-attention keys and values of every decoder layer),
then ``decode_step`` a token at a time against a self-attention KV cache of fixed length that is an
explicit input and output (the Stateful Conformer pattern of PAPERS.md section 7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Seq2SeqConfig:
    vocab_size: int = 264
    d_model: int = 64
    encoder_layers: int = 2
    decoder_layers: int = 1
    heads: int = 4  # query heads
    kv_heads: int = 2  # key/value heads (grouped-query attention: heads % kv_heads == 0)
    head_dim: int = 16
    ffn_dim: int = 256
    rope_theta: float = 10000.0
    eps: float = 1e-6
    max_source: int = 32  # the exported encoder's fixed source length
    max_target: int = 32  # the decoder's KV cache length

    def __post_init__(self) -> None:
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")


# The sizes the issue names: a tiny one for tests, a ~30M one to train on CPU, and the paper's ~330M layout
# (20 + 10 layers, d_model 1024, FFN 4096, 6 query heads x 64 with 3 KV heads; 332M with a 32k vocabulary).
SEQ2SEQ_CONFIGS = {
    "tiny": Seq2SeqConfig(),
    "30m": Seq2SeqConfig(d_model=448, encoder_layers=8, decoder_layers=4, heads=8, kv_heads=4, head_dim=56,
                         ffn_dim=1792, max_source=64, max_target=64),
    "330m": Seq2SeqConfig(vocab_size=32000, d_model=1024, encoder_layers=20, decoder_layers=10, heads=6, kv_heads=3,
                          head_dim=64, ffn_dim=4096, max_source=512, max_target=512),
}  # fmt: skip


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
    """cos and sin tables (T, head_dim) for float positions (T,), computed in the graph (no table lookup)."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.to(torch.float32).reshape(-1, 1) * inv_freq.reshape(1, -1)
    angles = torch.cat([angles, angles], dim=-1)
    return torch.cos(angles), torch.sin(angles)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, D) by the tables (T, D): the rotate-half form."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    """Grouped-query attention; ``rope`` applies rotary embeddings to q and k (self-attention only)."""

    def __init__(self, cfg: Seq2SeqConfig, rope: bool):
        super().__init__()
        self.cfg, self.rope = cfg, rope
        self.q = nn.Linear(cfg.d_model, cfg.heads * cfg.head_dim, bias=False)
        self.k = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=False)
        self.v = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=False)
        self.o = nn.Linear(cfg.heads * cfg.head_dim, cfg.d_model, bias=False)

    def _split(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, heads, self.cfg.head_dim).transpose(1, 2)  # (B, H, T, D)

    def project_kv(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Keys and values (B, kv_heads, T, D) of ``x``, rotated when this is self-attention."""
        k, v = self._split(self.k(x), self.cfg.kv_heads), self._split(self.v(x), self.cfg.kv_heads)
        if rope is not None:
            k = apply_rotary(k, *rope)
        return k, v

    def attend(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Queries from ``x`` against given keys/values; ``mask`` (broadcast to B, H, Tq, Tk) is additive."""
        cfg = self.cfg
        q = self._split(self.q(x), cfg.heads)
        if rope is not None:
            q = apply_rotary(q, *rope)
        b, _, tq, d = q.shape
        group = cfg.heads // cfg.kv_heads
        # the query heads of one group share their key/value head: fold the group into the query axis
        q = q.reshape(b, cfg.kv_heads, group * tq, d)
        scores = q @ k.transpose(-1, -2) * d**-0.5  # (B, kv_heads, group * Tq, Tk)
        if mask is not None:
            scores = scores.reshape(b, cfg.kv_heads, group, tq, -1) + mask.reshape(mask.shape[0], 1, 1, tq, -1)
            scores = scores.reshape(b, cfg.kv_heads, group * tq, -1)
        out = torch.softmax(scores, dim=-1) @ v  # (B, kv_heads, group * Tq, D)
        out = out.reshape(b, cfg.heads, tq, d).transpose(1, 2).reshape(b, tq, cfg.heads * d)
        return self.o(out)


class FeedForward(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.up, self.down = nn.Linear(cfg.d_model, cfg.ffn_dim), nn.Linear(cfg.ffn_dim, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.norm1, self.attn = RMSNorm(cfg.d_model, cfg.eps), Attention(cfg, rope=True)
        self.norm2, self.ffn = RMSNorm(cfg.d_model, cfg.eps), FeedForward(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rope) -> torch.Tensor:
        h = self.norm1(x)
        k, v = self.attn.project_kv(h, rope)
        x = x + self.attn.attend(h, k, v, mask, rope)
        return x + self.ffn(self.norm2(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, cross: bool = True):
        super().__init__()
        self.norm1, self.self_attn = RMSNorm(cfg.d_model, cfg.eps), Attention(cfg, rope=True)
        self.norm2 = RMSNorm(cfg.d_model, cfg.eps) if cross else None
        self.cross_attn = Attention(cfg, rope=False) if cross else None
        self.norm3, self.ffn = RMSNorm(cfg.d_model, cfg.eps), FeedForward(cfg)

    def forward(self, x, self_kv, self_mask, rope, cross_kv=None, cross_mask=None) -> torch.Tensor:
        """``self_kv`` are the keys/values to attend to (the cache with this step's written in)."""
        x = x + self.self_attn.attend(self.norm1(x), *self_kv, self_mask, rope)
        if self.cross_attn is not None:
            x = x + self.cross_attn.attend(self.norm2(x), *cross_kv, cross_mask)
        return x + self.ffn(self.norm3(x))


NEG_INF = -1e9  # additive mask value: finite, so a fully masked row gives a uniform softmax, not NaN


def padding_mask(lengths_mask: torch.Tensor, queries: int) -> torch.Tensor:
    """Additive mask (B, queries, S) from a (B, S) mask of 1 (token) / 0 (padding)."""
    return (
        ((1.0 - lengths_mask.to(torch.float32)) * NEG_INF).reshape(lengths_mask.shape[0], 1, -1).expand(-1, queries, -1)
    )


def causal_mask(steps: int) -> torch.Tensor:
    return torch.triu(torch.full((steps, steps), NEG_INF), diagonal=1)


def cache_plan(position: torch.Tensor, tokens: int, slots: int, head_dim: int, theta: float):
    """For ``tokens`` new tokens starting at ``position``: the one-hot write matrix (tokens, slots), the additive
    visibility mask (1, tokens, slots) (a token sees the slots up to its own) and the rotary tables."""
    steps = position.reshape(1) + torch.arange(tokens)  # (K,)
    index = torch.arange(slots).reshape(1, -1)
    write = (index == steps.reshape(-1, 1)).to(torch.float32)
    visible = ((index > steps.reshape(-1, 1)).to(torch.float32) * NEG_INF).reshape(1, tokens, slots)
    return write, visible, rotary(steps, head_dim, theta)


def cached_self_attention(layer, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor], write, rope):
    """The layer's cache (B, kv_heads, slots, D) with the new tokens' keys/values written into their slots.

    A one-hot blend rather than indexing: no data-dependent gather or scatter, so every runtime can run it,
    and the cache keeps its fixed shape.
    """
    k, v = layer.self_attn.project_kv(layer.norm1(x), rope)  # (B, kv_heads, K, D)
    keep = 1.0 - write.sum(0).reshape(1, 1, -1, 1)
    place = write.transpose(0, 1)  # (slots, K)
    return cache[0] * keep + place @ k, cache[1] * keep + place @ v


class EncoderDecoder(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.encoder_norm = RMSNorm(cfg.d_model, cfg.eps)
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.decoder_norm = RMSNorm(cfg.d_model, cfg.eps)
        nn.init.normal_(self.embed.weight, std=cfg.d_model**-0.5)

    # -- the three graphs a device runs -------------------------------------------------------
    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """(B, S) token ids and 1/0 mask -> encoder states (B, S, d). Positions centred on the source's middle."""
        steps = src.shape[1]
        positions = torch.arange(steps) - (steps - 1) // 2
        rope = rotary(positions, self.cfg.head_dim, self.cfg.rope_theta)
        mask = padding_mask(src_mask, steps)
        x = self.embed(src)
        for layer in self.encoder:
            x = layer(x, mask, rope)
        return self.encoder_norm(x)

    def cross_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each decoder layer's cross-attention keys and values, computed once per request."""
        return [layer.cross_attn.project_kv(memory) for layer in self.decoder]

    def decode_step(
        self,
        tokens: torch.Tensor,
        position: torch.Tensor,
        cache: list[tuple[torch.Tensor, torch.Tensor]],
        cross: list[tuple[torch.Tensor, torch.Tensor]],
        src_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """New token(s) (B, K) from ``position`` (a 1-element int tensor) -> next-token logits (B, vocab) after
        the last of them, and the new cache (see :func:`cached_self_attention`)."""
        cfg = self.cfg
        write, visible, rope = cache_plan(position, tokens.shape[1], cfg.max_target, cfg.head_dim, cfg.rope_theta)
        cross_mask = padding_mask(src_mask, tokens.shape[1])
        x = self.embed(tokens)
        new_cache = []
        for layer, layer_cache, kv in zip(self.decoder, cache, cross, strict=True):
            self_kv = cached_self_attention(layer, x, layer_cache, write, rope)
            new_cache.append(self_kv)
            x = layer(x, self_kv, visible, rope, kv, cross_mask)
        logits = F.linear(self.decoder_norm(x[:, -1:]), self.embed.weight)
        return logits[:, 0], new_cache

    def empty_cache(self, batch: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        shape = (batch, self.cfg.kv_heads, self.cfg.max_target, self.cfg.head_dim)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in self.decoder]

    # -- training ---------------------------------------------------------------------------------
    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, vocab) of the decoder inputs ``tgt`` (B, T)."""
        memory = self.encode(src, src_mask)
        cross = self.cross_kv(memory)
        steps = tgt.shape[1]
        rope = rotary(torch.arange(steps), self.cfg.head_dim, self.cfg.rope_theta)
        self_mask = causal_mask(steps).reshape(1, steps, steps)
        cross_mask = padding_mask(src_mask, steps)
        x = self.embed(tgt)
        for layer, kv in zip(self.decoder, cross, strict=True):
            h = layer.norm1(x)
            x = layer(x, layer.self_attn.project_kv(h, rope), self_mask, rope, kv, cross_mask)
        return F.linear(self.decoder_norm(x), self.embed.weight)


class DecoderOnly(nn.Module):
    """The comparison model: one causal stack over ``source BOS target`` with the same block, norms, GQA, RoPE
    and tied embedding, its depth chosen (:func:`decoder_only_twin`) so that the parameter counts match."""

    def __init__(self, cfg: Seq2SeqConfig, layers: int):
        super().__init__()
        self.cfg, self.layers = cfg, layers
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(DecoderLayer(cfg, cross=False) for _ in range(layers))
        self.norm = RMSNorm(cfg.d_model, cfg.eps)
        nn.init.normal_(self.embed.weight, std=cfg.d_model**-0.5)

    @property
    def cache_slots(self) -> int:
        return self.cfg.max_source + self.cfg.max_target

    def step(
        self, tokens: torch.Tensor, position: torch.Tensor, cache: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Token(s) (B, K) from ``position``: the prompt in one call (prefill), then one token a call."""
        cfg = self.cfg
        write, visible, rope = cache_plan(position, tokens.shape[1], self.cache_slots, cfg.head_dim, cfg.rope_theta)
        x = self.embed(tokens)
        new_cache = []
        for block, block_cache in zip(self.blocks, cache, strict=True):
            self_kv = cached_self_attention(block, x, block_cache, write, rope)
            new_cache.append(self_kv)
            x = block(x, self_kv, visible, rope)
        logits = F.linear(self.norm(x[:, -1:]), self.embed.weight)
        return logits[:, 0], new_cache

    def empty_cache(self, batch: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        shape = (batch, self.cfg.kv_heads, self.cache_slots, self.cfg.head_dim)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in self.blocks]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Causal logits (B, T, vocab) of a whole ``source BOS target`` sequence (training)."""
        steps = tokens.shape[1]
        rope = rotary(torch.arange(steps), self.cfg.head_dim, self.cfg.rope_theta)
        mask = causal_mask(steps).reshape(1, steps, steps)
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, block.self_attn.project_kv(block.norm1(x), rope), mask, rope)
        return F.linear(self.norm(x), self.embed.weight)


def decoder_only_twin(cfg: Seq2SeqConfig) -> DecoderOnly:
    """The decoder-only model whose parameter count is closest to the encoder-decoder's."""
    target = parameter_count(EncoderDecoder(cfg))
    one = parameter_count(DecoderOnly(cfg, 1)) - parameter_count(DecoderOnly(cfg, 0))
    base = parameter_count(DecoderOnly(cfg, 0))
    return DecoderOnly(cfg, max(1, round((target - base) / one)))


def parameter_count(module: nn.Module) -> int:
    """Trainable parameters, the shared embedding counted once."""
    return sum(p.numel() for p in module.parameters())
