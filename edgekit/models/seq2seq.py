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

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.generation.tokenizer import ByteTokenizer, NoTokenizer, Tokenizer
from edgekit.models.layers import step_slice
from edgekit.models.spec import ModelSpec, SubGraph, register_model, with_named_inputs


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
    """cos and sin tables (T, head_dim) for float positions (T,).

    The frequencies are a constant built in Python (duplicated for the two halves), so an exported graph holds
    a multiply and two trig ops, not a power, an arange and a concat that XNNPACK would leave out.
    """
    freqs = [theta ** (-2.0 * (i % (head_dim // 2)) / head_dim) for i in range(head_dim)]
    angles = positions.reshape(-1, 1) * torch.tensor(freqs, dtype=torch.float32).reshape(1, -1)
    return torch.cos(angles), torch.sin(angles)


def _rotate_half_weight(head_dim: int) -> torch.Tensor:
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
    of :func:`_rotate_half_weight`, held as a module buffer so that XNNPACK takes the product as a linear layer)."""
    return x * cos + F.linear(x, rotate_half) * sin


def float_range(start: int, stop: int) -> torch.Tensor:
    """A float constant start..stop-1 (built in Python: an arange would be an op XNNPACK leaves out)."""
    return torch.tensor([float(i) for i in range(start, stop)], dtype=torch.float32)


class Attention(nn.Module):
    """Grouped-query attention; ``rope`` applies rotary embeddings to q and k (self-attention only)."""

    def __init__(self, cfg: Seq2SeqConfig, rope: bool):
        super().__init__()
        self.cfg, self.rope = cfg, rope
        self.q = nn.Linear(cfg.d_model, cfg.heads * cfg.head_dim, bias=False)
        self.k = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=False)
        self.v = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=False)
        self.o = nn.Linear(cfg.heads * cfg.head_dim, cfg.d_model, bias=False)
        if rope:
            self.register_buffer("rotate_half", _rotate_half_weight(cfg.head_dim))

    def _split(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, heads, self.cfg.head_dim).transpose(1, 2)  # (B, H, T, D)

    def project_kv(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Keys and values (B, kv_heads, T, D) of ``x``, rotated when this is self-attention."""
        k, v = self._split(self.k(x), self.cfg.kv_heads), self._split(self.v(x), self.cfg.kv_heads)
        if rope is not None:
            k = apply_rotary(k, *rope, self.rotate_half)
        return k, v

    def attend(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Queries from ``x`` against keys/values (B, kv_heads, Tk, D). ``mask`` is additive, (B, 1, Tk) (the
        same for every query: padding, or a one-token decode step) or (B, Tq, Tk)."""
        q = self._split(self.q(x), self.cfg.heads)
        if rope is not None:
            q = apply_rotary(q, *rope, self.rotate_half)
        return self.o(grouped_attention(q, k, v, self.cfg.kv_heads, self.cfg.head_dim**-0.5, mask))


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


def cached_self_attention(layer, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None, write, rope):
    """The layer's cache with the new tokens' (rotated) keys/values written in (see :func:`write_cache`)."""
    return write_cache(cache, *layer.self_attn.project_kv(layer.norm1(x), rope), write)


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
        first = -((steps - 1) // 2)
        rope = rotary(float_range(first, first + steps), self.cfg.head_dim, self.cfg.rope_theta)
        mask = padding_mask(src_mask)
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
        """New token(s) (B, K) from ``position`` (a float (1,) tensor) -> next-token logits (B, vocab) after
        the last of them, and the new cache (see :func:`cached_self_attention`)."""
        cfg = self.cfg
        write, visible, steps = cache_plan(position, tokens.shape[1], cfg.max_target)
        rope = rotary(steps, cfg.head_dim, cfg.rope_theta)
        cross_mask = padding_mask(src_mask)
        # a single token's visibility is a key mask; several (prefill) need one row each
        visible = visible.reshape(1, 1, -1) if tokens.shape[1] == 1 else visible
        x = self.embed(tokens)
        new_cache = []
        for layer, layer_cache, kv in zip(self.decoder, cache, cross, strict=True):
            self_kv = cached_self_attention(layer, x, layer_cache, write, rope)
            new_cache.append(self_kv)
            x = layer(x, self_kv, visible, rope, kv, cross_mask)
        last = step_slice(x, x.shape[1] - 1, 1)
        logits = F.linear(self.decoder_norm(last), self.embed.weight)
        return logits.reshape(logits.shape[0], logits.shape[2]), new_cache

    def empty_cache(self, batch: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        shape = (batch, self.cfg.kv_heads, self.cfg.max_target, self.cfg.head_dim)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in self.decoder]

    # -- training ---------------------------------------------------------------------------------
    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, vocab) of the decoder inputs ``tgt`` (B, T)."""
        memory = self.encode(src, src_mask)
        cross = self.cross_kv(memory)
        steps = tgt.shape[1]
        rope = rotary(float_range(0, steps), self.cfg.head_dim, self.cfg.rope_theta)
        self_mask = causal_mask(steps).reshape(1, steps, steps)
        cross_mask = padding_mask(src_mask)
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
        self, tokens: torch.Tensor, position: torch.Tensor, cache: list[tuple[torch.Tensor, torch.Tensor]] | None
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Token(s) (B, K) from ``position``: the prompt in one call (prefill, ``cache`` None: nothing before
        it), then one token a call."""
        cfg = self.cfg
        write, visible, steps = cache_plan(position, tokens.shape[1], self.cache_slots)
        rope = rotary(steps, cfg.head_dim, cfg.rope_theta)
        visible = visible.reshape(1, 1, -1) if tokens.shape[1] == 1 else visible
        x = self.embed(tokens)
        new_cache = []
        for block, block_cache in zip(self.blocks, cache or [None] * self.layers, strict=True):
            self_kv = cached_self_attention(block, x, block_cache, write, rope)
            new_cache.append(self_kv)
            x = block(x, self_kv, visible, rope)
        last = step_slice(x, x.shape[1] - 1, 1)
        logits = F.linear(self.norm(last), self.embed.weight)
        return logits.reshape(logits.shape[0], logits.shape[2]), new_cache

    def empty_cache(self, batch: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        shape = (batch, self.cfg.kv_heads, self.cache_slots, self.cfg.head_dim)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in self.blocks]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Causal logits (B, T, vocab) of a whole ``source BOS target`` sequence (training)."""
        steps = tokens.shape[1]
        rope = rotary(float_range(0, steps), self.cfg.head_dim, self.cfg.rope_theta)
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


# -- export: the graphs a device runs, and their registration --------------------------------------------

# The config values a preset exposes as options (rope_theta and eps stay the paper's).
CONFIG_OPTIONS = ("d_model", "encoder_layers", "decoder_layers", "heads", "kv_heads", "head_dim", "ffn_dim",
                  "max_source", "max_target", "vocab_size")  # fmt: skip


def _to_3d(t: torch.Tensor) -> torch.Tensor:
    """(1, kv_heads, T, D) -> (kv_heads, T, D) at the graph boundary: ExecuTorch's XNNPACK delegate reports a 4-D
    delegate output in its channels-last order (and the runtime then refuses to resize the static output)."""
    return t.reshape(t.shape[1], t.shape[2], t.shape[3])


def _pairs(flat: list[torch.Tensor], cfg: Seq2SeqConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Graph-boundary K/V tensors (k_0, v_0, k_1, v_1 ...) as the model's per-layer 4-D (k, v) pairs."""
    full = [t.reshape(1, cfg.kv_heads, t.shape[1], cfg.head_dim) for t in flat]
    return list(zip(full[0::2], full[1::2], strict=True))


def _flat(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    return tuple(_to_3d(t) for pair in pairs for t in pair)


def _kv_names(prefix: str, layers: int, suffix: str = "") -> tuple[str, ...]:
    return tuple(f"{prefix}_{kind}_{i}{suffix}" for i in range(layers) for kind in ("k", "v"))


def _kv_examples(cfg: Seq2SeqConfig, layers: int, steps: int) -> tuple[torch.Tensor, ...]:
    """Zero K/V of the boundary shape: example inputs known from the config, without running the model."""
    return tuple(torch.zeros(cfg.kv_heads, steps, cfg.head_dim) for _ in range(2 * layers))


def _cache_layout(shape: tuple[int, ...], layers: int, initial: str) -> dict:
    return {"shape": list(shape), "inputs": list(_kv_names("self", layers)),
            "outputs": list(_kv_names("self", layers, "_out")), "initial": initial,
            "write": "one-hot at position"}  # fmt: skip


class _EncoderGraph(nn.Module):
    """(src, src_mask) -> cross_k_0, cross_v_0, ...: the encoder and every decoder layer's cross K/V, once."""

    def __init__(self, model: EncoderDecoder):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        src, src_mask = args
        return _flat(self.model.cross_kv(self.model.encode(src, src_mask)))


class _DecoderStepGraph(nn.Module):
    """(tokens, position, src_mask, self_k_0, self_v_0, ..., cross_k_0, cross_v_0, ...) -> logits, new self K/V."""

    def __init__(self, model: EncoderDecoder):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        tokens, position, src_mask, *rest = args
        kv = _pairs(rest, self.model.cfg)
        layers = self.model.cfg.decoder_layers
        logits, new_cache = self.model.decode_step(tokens, position, kv[:layers], kv[layers:], src_mask)
        return (logits, *_flat(new_cache))


def seq2seq_graphs(model: nn.Module, tokenizer: Tokenizer | None = None) -> tuple[tuple[SubGraph, ...], dict]:
    """The encoder and decoder-step SubGraphs of ``model`` and the manifest's ``seq2seq`` layout.

    ``model`` is any encoder-decoder with this module's device interface (``encode``, ``cross_kv``,
    ``decode_step``) and a config naming ``kv_heads``, ``head_dim``, ``decoder_layers``, ``max_source`` and
    ``max_target``: :class:`EncoderDecoder`, or a checkpoint family such as T5 or BART.
    """
    cfg = model.cfg
    layers = cfg.decoder_layers
    tok = tokenizer or ByteTokenizer()
    # int32 ids: LiteRT lowers int64 to int32 anyway, and every runtime takes int32 indices
    ids = [i % tok.vocab_size for i in (104, 105, 33)]
    src, src_mask = (torch.from_numpy(a) for a in tok.pad(ids, cfg.max_source))
    cache = _kv_examples(cfg, layers, cfg.max_target)
    step_inputs = (torch.tensor([[tok.bos_id]], dtype=torch.int32), torch.tensor([0.0]), src_mask, *cache,
                   *_kv_examples(cfg, layers, cfg.max_source))  # fmt: skip
    graphs = (
        SubGraph("encoder", with_named_inputs(_EncoderGraph, 2)(model).eval(), (src, src_mask), ("src", "src_mask"),
                 _kv_names("cross", layers)),
        SubGraph("decoder_step", with_named_inputs(_DecoderStepGraph, len(step_inputs))(model).eval(), step_inputs,
                 ("tokens", "position", "src_mask", *_kv_names("self", layers), *_kv_names("cross", layers)),
                 ("logits", *_kv_names("self", layers, "_out"))),
    )  # fmt: skip
    layout = {
        "tokenizer": tok.to_json(),
        "max_source": cfg.max_source,
        "max_target": cfg.max_target,
        "decoder_layers": layers,
        "cache": _cache_layout(cache[0].shape, layers, "zeros"),
        "cross": {"from": "encoder", "names": list(_kv_names("cross", layers))},
    }
    return graphs, layout


class _PrefillGraph(nn.Module):
    """(tokens (1, P)) -> logits after the last, and the cache with all P written (the time to the first token)."""

    def __init__(self, model: DecoderOnly):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        (tokens,) = args
        logits, cache = self.model.step(tokens, torch.tensor([0.0]), None)
        return (logits, *_flat(cache))


class _TwinStepGraph(nn.Module):
    """(token, position, self_k_0, self_v_0, ...) -> logits, the new cache."""

    def __init__(self, model: DecoderOnly):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        tokens, position, *rest = args
        logits, new_cache = self.model.step(tokens, position, _pairs(rest, self.model.cfg))
        return (logits, *_flat(new_cache))


def decoder_only_graphs(model: DecoderOnly, prompt_len: int) -> tuple[tuple[SubGraph, ...], dict]:
    """The ``prefill`` (a prompt of exactly ``prompt_len`` tokens) and ``decoder_step`` SubGraphs and their layout."""
    tok, layers = ByteTokenizer(), model.layers
    if not 1 <= prompt_len < model.cache_slots:
        raise ValueError(f"prompt_len must be in 1..{model.cache_slots - 1}, got {prompt_len}")
    prompt = torch.full((1, prompt_len), 97, dtype=torch.int32)
    prompt[0, -1] = tok.bos_id
    cache = _kv_examples(model.cfg, layers, model.cache_slots)
    step_inputs = (torch.tensor([[97]], dtype=torch.int32), torch.tensor([float(prompt_len)]), *cache)
    outputs = ("logits", *_kv_names("self", layers, "_out"))
    graphs = (
        SubGraph("prefill", with_named_inputs(_PrefillGraph, 1)(model).eval(), (prompt,), ("tokens",), outputs),
        SubGraph("decoder_step", with_named_inputs(_TwinStepGraph, len(step_inputs))(model).eval(), step_inputs,
                 ("tokens", "position", *_kv_names("self", layers)), outputs),
    )  # fmt: skip
    layout = {
        "tokenizer": tok.to_json(),
        "prompt_len": prompt_len,
        "max_target": model.cache_slots - prompt_len,
        "layers": layers,
        "cache": _cache_layout(cache[0].shape, layers, "written by prefill"),
    }
    return graphs, layout


def _build_encoder_decoder(name: str, cfg: Seq2SeqConfig) -> ModelSpec:
    model = EncoderDecoder(cfg).eval()
    graphs, layout = seq2seq_graphs(model)
    teacher = (*graphs[0].example_inputs, torch.tensor([[257, 104]], dtype=torch.int32))
    return ModelSpec(
        name=name, family="seq2seq", module=model, example_inputs=teacher, input_names=("src", "src_mask", "tgt"),
        output_names=("logits",), config={k: getattr(cfg, k) for k in CONFIG_OPTIONS}, task="seq2seq",
        graphs=graphs, extras={"seq2seq": layout},
    )  # fmt: skip


def checkpoint_spec(name: str, model: nn.Module) -> ModelSpec:
    """A checkpoint family's model (T5, BART: its config names the special ids) with its encoder and decoder-step
    graphs; no tokenizer until a checkpoint folder brings one (:mod:`edgekit.models.hf_folder`)."""
    cfg = model.eval().cfg
    tok = NoTokenizer(cfg.pad_token_id, cfg.decoder_start_token_id, cfg.eos_token_id, cfg.vocab_size)
    graphs, layout = seq2seq_graphs(model, tok)
    teacher = (*graphs[0].example_inputs, torch.tensor([[cfg.decoder_start_token_id, 5]], dtype=torch.int32))
    return ModelSpec(
        name=name, family="seq2seq", module=model, example_inputs=teacher, input_names=("src", "src_mask", "tgt"),
        output_names=("logits",), config=asdict(cfg), task="seq2seq", graphs=graphs, extras={"seq2seq": layout},
    )  # fmt: skip


def _build_twin(name: str, cfg: Seq2SeqConfig, prompt_len: int = 0) -> ModelSpec:
    # the prompt the prefill graph takes: the source bytes and BOS (0: a full-length source)
    prompt_len = prompt_len or cfg.max_source + 1
    model = decoder_only_twin(cfg).eval()
    graphs, layout = decoder_only_graphs(model, prompt_len)
    config = {**{k: getattr(cfg, k) for k in CONFIG_OPTIONS}, "prompt_len": prompt_len}
    return ModelSpec(
        name=name, family="seq2seq", module=model, example_inputs=graphs[0].example_inputs, input_names=("tokens",),
        output_names=("logits",), config=config, task="seq2seq", graphs=graphs,
        extras={"decoder_only": {**layout, "layers_for_equal_size": model.layers}},
    )  # fmt: skip


def _register(name: str, preset: str, build: Callable[..., ModelSpec], description: str, **extra: int) -> None:
    """Register ``build(name, Seq2SeqConfig, **extra)`` with the preset's config values as keyword options.

    The registry reads a factory's options from its signature; here the signature is made from the config
    fields (plus ``extra``), so that both model kinds and all three presets share one list of options.
    """
    base = SEQ2SEQ_CONFIGS[preset]
    options = {**{k: getattr(base, k) for k in CONFIG_OPTIONS}, **extra}

    def factory(**config: int) -> ModelSpec:
        cfg = replace(base, **{k: v for k, v in config.items() if k in CONFIG_OPTIONS})
        return build(name, cfg, **{k: v for k, v in config.items() if k in extra})

    factory.__signature__ = inspect.Signature(
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v, annotation=int) for k, v in options.items()]
    )
    register_model(name, family="seq2seq", description=description)(factory)


for _preset in SEQ2SEQ_CONFIGS:
    _register(f"seq2seq_{_preset}", _preset, _build_encoder_decoder, f"encoder-decoder SLM ({_preset}): GQA, RoPE, "
              "RMSNorm, tied embedding; exported as encoder + decoder-step graphs with a KV cache")  # fmt: skip
    _register(f"seq2seq_{_preset}_twin", _preset, _build_twin, f"the decoder-only twin of seq2seq_{_preset} (equal "
              "parameters): prefill + decoder-step graphs with a KV cache", prompt_len=0)  # fmt: skip
