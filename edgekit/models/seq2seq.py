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
        cfg = self.cfg
        q = self._split(self.q(x), cfg.heads)
        if rope is not None:
            q = apply_rotary(q, *rope, self.rotate_half)
        b, _, tq, d = q.shape
        tk, group, kvh = k.shape[2], cfg.heads // cfg.kv_heads, cfg.kv_heads
        # the query heads of one group share their key/value head: fold the group into the query axis, and
        # batch and KV heads into the bmm batch (3-D products: XNNPACK leaves 4-D ones with expand copies)
        q = q.reshape(b * kvh, group * tq, d)
        k3, v3 = k.reshape(b * kvh, tk, d), v.reshape(b * kvh, tk, d)
        scores = torch.bmm(q, k3.transpose(1, 2)) * d**-0.5  # (B * kv_heads, group * Tq, Tk)
        if mask is not None and mask.shape[1] == 1:
            scores = (scores.reshape(b, kvh * group * tq, tk) + mask).reshape(b * kvh, group * tq, tk)
        elif mask is not None:
            scores = scores.reshape(b, kvh, group, tq, tk) + mask.reshape(mask.shape[0], 1, 1, tq, tk)
            scores = scores.reshape(b * kvh, group * tq, tk)
        out = torch.bmm(torch.softmax(scores, dim=-1), v3)  # (B * kv_heads, group * Tq, D)
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


def padding_mask(lengths_mask: torch.Tensor) -> torch.Tensor:
    """Additive key mask (B, 1, S) from a (B, S) float mask of 1 (token) / 0 (padding)."""
    return ((1.0 - lengths_mask) * NEG_INF).reshape(lengths_mask.shape[0], 1, lengths_mask.shape[1])


def causal_mask(steps: int) -> torch.Tensor:
    return torch.triu(torch.full((steps, steps), NEG_INF), diagonal=1)


def cache_plan(position: torch.Tensor, tokens: int, slots: int, head_dim: int, theta: float):
    """For ``tokens`` new tokens from ``position`` (a float (1,) tensor): the one-hot write rows (tokens, slots),
    the additive visibility mask (1, tokens, slots) (a token sees the slots up to its own) and the rotary tables.

    Built from float arithmetic on constants (relu(1 - |slot - p|) is exactly one-hot for integer p), so the
    graph needs no integer comparison, cast or arange.
    """
    steps = position.reshape(1, 1) + float_range(0, tokens).reshape(-1, 1)  # (K, 1)
    index = float_range(0, slots).reshape(1, slots)
    write = torch.relu(1.0 - torch.abs(index - steps))
    visible = (torch.clamp(index - steps, 0.0, 1.0) * NEG_INF).reshape(1, tokens, slots)
    return write, visible, rotary(steps, head_dim, theta)


def cached_self_attention(layer, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None, write, rope):
    """The layer's cache (B, kv_heads, slots, D) with the new tokens' keys/values written into their slots.

    A one-hot blend rather than indexing: no data-dependent gather or scatter, so every runtime can run it,
    and the cache keeps its fixed shape.
    """
    k, v = layer.self_attn.project_kv(layer.norm1(x), rope)  # (B, kv_heads, K, D)
    count, slots = write.shape
    places = [(write if count == 1 else write[i : i + 1]).reshape(1, 1, slots, 1) for i in range(count)]
    keep = 1.0 - sum(places[1:], places[0])
    # a broadcast multiply per new token (a decode step has one): XNNPACK mis-sizes a 2-D @ 4-D product.
    # No cache (a prefill from nothing): the new keys/values alone, no zero tensor for the graph to materialise.
    new_k = new_v = None
    if cache is not None:
        new_k, new_v = cache[0] * keep, cache[1] * keep
    for i, place in enumerate(places):
        k_i = k if k.shape[2] == 1 else k[:, :, i : i + 1]
        v_i = v if v.shape[2] == 1 else v[:, :, i : i + 1]
        add_k, add_v = place * k_i, place * v_i
        new_k = add_k if new_k is None else new_k + add_k
        new_v = add_v if new_v is None else new_v + add_v
    return new_k, new_v


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
        write, visible, rope = cache_plan(position, tokens.shape[1], cfg.max_target, cfg.head_dim, cfg.rope_theta)
        cross_mask = padding_mask(src_mask)
        # a single token's visibility is a key mask; several (prefill) need one row each
        visible = visible.reshape(1, 1, -1) if tokens.shape[1] == 1 else visible
        x = self.embed(tokens)
        new_cache = []
        for layer, layer_cache, kv in zip(self.decoder, cache, cross, strict=True):
            self_kv = cached_self_attention(layer, x, layer_cache, write, rope)
            new_cache.append(self_kv)
            x = layer(x, self_kv, visible, rope, kv, cross_mask)
        last = x if x.shape[1] == 1 else x[:, -1:]
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
        write, visible, rope = cache_plan(position, tokens.shape[1], self.cache_slots, cfg.head_dim, cfg.rope_theta)
        visible = visible.reshape(1, 1, -1) if tokens.shape[1] == 1 else visible
        x = self.embed(tokens)
        new_cache = []
        for block, block_cache in zip(self.blocks, cache or [None] * self.layers, strict=True):
            self_kv = cached_self_attention(block, x, block_cache, write, rope)
            new_cache.append(self_kv)
            x = block(x, self_kv, visible, rope)
        last = x if x.shape[1] == 1 else x[:, -1:]
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


class _EncoderGraph(nn.Module):
    """(src, src_mask) -> cross_k_0, cross_v_0, ...: the encoder and every decoder layer's cross K/V, once."""

    def __init__(self, model: EncoderDecoder):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        src, src_mask = args
        kv = self.model.cross_kv(self.model.encode(src, src_mask))
        return tuple(_to_3d(t) for pair in kv for t in pair)


class _DecoderStepGraph(nn.Module):
    """(tokens, position, src_mask, self_k_0, self_v_0, ..., cross_k_0, cross_v_0, ...) -> logits, new self K/V."""

    def __init__(self, model: EncoderDecoder):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        tokens, position, src_mask, *rest = args
        layers, cfg = len(self.model.decoder), self.model.cfg
        rest = [t.reshape(1, cfg.kv_heads, t.shape[1], cfg.head_dim) for t in rest]
        cache = [(rest[2 * i], rest[2 * i + 1]) for i in range(layers)]
        cross = [(rest[2 * layers + 2 * i], rest[2 * layers + 2 * i + 1]) for i in range(layers)]
        logits, new_cache = self.model.decode_step(tokens, position, cache, cross, src_mask)
        return (logits, *(_to_3d(t) for pair in new_cache for t in pair))


def _to_3d(t: torch.Tensor) -> torch.Tensor:
    """(1, kv_heads, T, D) -> (kv_heads, T, D) at the graph boundary: ExecuTorch's XNNPACK delegate reports a 4-D
    delegate output in its channels-last order (and the runtime then refuses to resize the static output)."""
    return t.reshape(t.shape[1], t.shape[2], t.shape[3])


def _kv_names(prefix: str, layers: int, suffix: str = "") -> tuple[str, ...]:
    return tuple(f"{prefix}_{kind}_{i}{suffix}" for i in range(layers) for kind in ("k", "v"))


def seq2seq_graphs(model: EncoderDecoder) -> tuple[tuple, dict]:
    """The encoder and decoder-step SubGraphs of ``model`` and the manifest's ``seq2seq`` layout."""
    from edgekit.generation.tokenizer import ByteTokenizer
    from edgekit.models.spec import SubGraph, with_named_inputs

    cfg, layers = model.cfg, len(model.decoder)
    tok = ByteTokenizer()
    # int32 ids: LiteRT lowers int64 to int32 anyway, and every runtime takes int32 indices
    src = torch.full((1, cfg.max_source), tok.pad_id, dtype=torch.int32)
    src[0, :3] = torch.tensor([104, 105, 33], dtype=torch.int32)
    src_mask = torch.zeros(1, cfg.max_source)
    src_mask[0, :3] = 1.0
    encoder = with_named_inputs(_EncoderGraph, 2)(model).eval()
    with torch.no_grad():
        cross = encoder(src, src_mask)
    cache = [_to_3d(t) for pair in model.empty_cache() for t in pair]
    step_inputs = (torch.tensor([[tok.bos_id]], dtype=torch.int32), torch.tensor([0.0]), src_mask,
                   *cache, *cross)  # fmt: skip
    decoder = with_named_inputs(_DecoderStepGraph, len(step_inputs))(model).eval()
    graphs = (
        SubGraph("encoder", encoder, (src, src_mask), ("src", "src_mask"), _kv_names("cross", layers)),
        SubGraph("decoder_step", decoder, step_inputs,
                 ("tokens", "position", "src_mask", *_kv_names("self", layers), *_kv_names("cross", layers)),
                 ("logits", *_kv_names("self", layers, "_out"))),
    )  # fmt: skip
    layout = {
        "tokenizer": tok.to_json(),
        "max_source": cfg.max_source,
        "max_target": cfg.max_target,
        "decoder_layers": layers,
        "cache": {"shape": list(cache[0].shape), "inputs": list(_kv_names("self", layers)),
                  "outputs": list(_kv_names("self", layers, "_out")), "initial": "zeros",
                  "write": "one-hot at position"},
        "cross": {"from": "encoder", "names": list(_kv_names("cross", layers))},
    }  # fmt: skip
    return graphs, layout


def _register(name: str, preset: str) -> None:
    from edgekit.models.spec import ModelSpec, register_model

    base = SEQ2SEQ_CONFIGS[preset]

    def factory(
        d_model: int = base.d_model,
        encoder_layers: int = base.encoder_layers,
        decoder_layers: int = base.decoder_layers,
        heads: int = base.heads,
        kv_heads: int = base.kv_heads,
        head_dim: int = base.head_dim,
        ffn_dim: int = base.ffn_dim,
        max_source: int = base.max_source,
        max_target: int = base.max_target,
        vocab_size: int = base.vocab_size,
    ) -> ModelSpec:
        cfg = Seq2SeqConfig(vocab_size=vocab_size, d_model=d_model, encoder_layers=encoder_layers,
                            decoder_layers=decoder_layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                            ffn_dim=ffn_dim, max_source=max_source, max_target=max_target)  # fmt: skip
        model = EncoderDecoder(cfg).eval()
        graphs, layout = seq2seq_graphs(model)
        teacher = (graphs[0].example_inputs[0], graphs[0].example_inputs[1],
                   torch.tensor([[257, 104]], dtype=torch.int32))  # fmt: skip
        return ModelSpec(
            name=name, family="seq2seq", module=model, example_inputs=teacher,
            input_names=("src", "src_mask", "tgt"), output_names=("logits",),
            config={k: v for k, v in cfg.__dict__.items() if k not in ("rope_theta", "eps")},
            task="seq2seq", graphs=graphs, extras={"seq2seq": layout},
        )  # fmt: skip

    register_model(name, family="seq2seq", description=f"encoder-decoder SLM ({preset}): GQA, RoPE, RMSNorm, "
                   "tied embedding; exported as encoder + decoder-step graphs with a KV cache")(factory)  # fmt: skip


for _name, _preset in (("seq2seq_tiny", "tiny"), ("seq2seq_30m", "30m"), ("seq2seq_330m", "330m")):
    _register(_name, _preset)


# -- the decoder-only twin's graphs ------------------------------------------------------------------------


class _PrefillGraph(nn.Module):
    """(tokens (1, P)) -> logits after the last, and the cache with all P written (the time to the first token)."""

    def __init__(self, model: DecoderOnly):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        (tokens,) = args
        logits, cache = self.model.step(tokens, torch.tensor([0.0]), None)
        return (logits, *(_to_3d(t) for pair in cache for t in pair))


class _TwinStepGraph(nn.Module):
    """(token, position, self_k_0, self_v_0, ...) -> logits, the new cache."""

    def __init__(self, model: DecoderOnly):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        tokens, position, *rest = args
        cfg = self.model.cfg
        rest = [t.reshape(1, cfg.kv_heads, t.shape[1], cfg.head_dim) for t in rest]
        cache = [(rest[2 * i], rest[2 * i + 1]) for i in range(self.model.layers)]
        logits, new_cache = self.model.step(tokens, position, cache)
        return (logits, *(_to_3d(t) for pair in new_cache for t in pair))


def decoder_only_graphs(model: DecoderOnly, prompt_len: int) -> tuple[tuple, dict]:
    """The ``prefill`` (a prompt of exactly ``prompt_len`` tokens) and ``decoder_step`` SubGraphs and their layout."""
    from edgekit.generation.tokenizer import ByteTokenizer
    from edgekit.models.spec import SubGraph, with_named_inputs

    tok, layers = ByteTokenizer(), model.layers
    if not 1 <= prompt_len < model.cache_slots:
        raise ValueError(f"prompt_len must be in 1..{model.cache_slots - 1}, got {prompt_len}")
    prompt = torch.full((1, prompt_len), 97, dtype=torch.int32)
    prompt[0, -1] = tok.bos_id
    prefill = with_named_inputs(_PrefillGraph, 1)(model).eval()
    with torch.no_grad():
        _, *cache = prefill(prompt)
    step_inputs = (torch.tensor([[97]], dtype=torch.int32), torch.tensor([float(prompt_len)]), *cache)
    step = with_named_inputs(_TwinStepGraph, len(step_inputs))(model).eval()
    graphs = (
        SubGraph("prefill", prefill, (prompt,), ("tokens",), ("logits", *_kv_names("self", layers, "_out"))),
        SubGraph("decoder_step", step, step_inputs, ("tokens", "position", *_kv_names("self", layers)),
                 ("logits", *_kv_names("self", layers, "_out"))),
    )  # fmt: skip
    layout = {
        "tokenizer": tok.to_json(),
        "prompt_len": prompt_len,
        "max_target": model.cache_slots - prompt_len,
        "layers": layers,
        "cache": {"shape": list(cache[0].shape), "inputs": list(_kv_names("self", layers)),
                  "outputs": list(_kv_names("self", layers, "_out")), "initial": "written by prefill"},
    }  # fmt: skip
    return graphs, layout


def _register_twin(name: str, preset: str) -> None:
    from edgekit.models.spec import ModelSpec, register_model

    base = SEQ2SEQ_CONFIGS[preset]

    def factory(
        d_model: int = base.d_model,
        encoder_layers: int = base.encoder_layers,
        decoder_layers: int = base.decoder_layers,
        heads: int = base.heads,
        kv_heads: int = base.kv_heads,
        head_dim: int = base.head_dim,
        ffn_dim: int = base.ffn_dim,
        max_source: int = base.max_source,
        max_target: int = base.max_target,
        vocab_size: int = base.vocab_size,
        prompt_len: int = 0,
    ) -> ModelSpec:
        # the prompt the prefill graph takes: the source bytes and BOS (0: a full-length source)
        prompt_len = prompt_len or max_source + 1
        cfg = Seq2SeqConfig(vocab_size=vocab_size, d_model=d_model, encoder_layers=encoder_layers,
                            decoder_layers=decoder_layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                            ffn_dim=ffn_dim, max_source=max_source, max_target=max_target)  # fmt: skip
        model = decoder_only_twin(cfg).eval()
        graphs, layout = decoder_only_graphs(model, prompt_len)
        config = {k: v for k, v in cfg.__dict__.items() if k not in ("rope_theta", "eps")}
        return ModelSpec(
            name=name, family="seq2seq", module=model, example_inputs=graphs[0].example_inputs,
            input_names=("tokens",), output_names=("logits",), config={**config, "prompt_len": prompt_len},
            task="seq2seq", graphs=graphs, extras={"decoder_only": {**layout, "layers_for_equal_size": model.layers}},
        )  # fmt: skip

    register_model(name, family="seq2seq", description=f"the decoder-only twin of seq2seq_{preset} (equal "
                   "parameters): prefill + decoder-step graphs with a KV cache")(factory)  # fmt: skip


for _name, _preset in (("seq2seq_tiny_twin", "tiny"), ("seq2seq_30m_twin", "30m"), ("seq2seq_330m_twin", "330m")):
    _register_twin(_name, _preset)
