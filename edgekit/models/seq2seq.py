"""Encoder-decoder small language models ("Return of the Encoder", 2025) and their decoder-only twin.

Pre-RMSNorm blocks with a final RMSNorm on each stack, grouped-query attention, rotary position embeddings
on self-attention only (encoder positions centred on the middle of the source, decoder positions 0..T-1),
GELU feed-forward layers with biases, and one embedding table shared by the encoder input, the decoder
input and the LM head.

Besides the teacher-forced ``forward(src, tgt)`` used for training, the model runs the way a device does:
``encode`` once, ``cross_kv`` once per request (the cross-attention keys and values of every decoder layer),
then ``decode_step`` a token at a time against a self-attention KV cache of fixed length that is an
explicit input and output (the Stateful Conformer pattern of PAPERS.md section 7): the interface of
:class:`edgekit.models.encdec_interface.EncoderDecoderModel`. The shared blocks are in
:mod:`edgekit.models.encdec_blocks`, the exported graphs in :mod:`edgekit.models.seq2seq_graphs`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.models.encdec_blocks import (
    RMSNorm,
    apply_rotary,
    cache_plan,
    causal_mask,
    float_range,
    grouped_attention,
    padding_mask,
    rotary,
    rotate_half_weight,
    write_cache,
)
from edgekit.models.encdec_interface import CacheLayout
from edgekit.models.layers import step_slice
from edgekit.models.seq2seq_graphs import decoder_only_graphs, seq2seq_graphs
from edgekit.models.spec import ModelSpec, register_model


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
            self.register_buffer("rotate_half", rotate_half_weight(cfg.head_dim))

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

    # -- the device interface (EncoderDecoderModel) ------------------------------------------------
    @property
    def max_source(self) -> int:
        return self.cfg.max_source

    @property
    def self_cache(self) -> CacheLayout:
        return CacheLayout(self.cfg.decoder_layers, self.cfg.kv_heads, self.cfg.head_dim, self.cfg.max_target)

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
        return self.self_cache.zeros(batch)

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
    def self_cache(self) -> CacheLayout:
        """One cache over ``source BOS target``: max_source + max_target slots."""
        cfg = self.cfg
        return CacheLayout(self.layers, cfg.kv_heads, cfg.head_dim, cfg.max_source + cfg.max_target)

    def step(
        self, tokens: torch.Tensor, position: torch.Tensor, cache: list[tuple[torch.Tensor, torch.Tensor]] | None
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Token(s) (B, K) from ``position``: the prompt in one call (prefill, ``cache`` None: nothing before
        it), then one token a call."""
        cfg = self.cfg
        write, visible, steps = cache_plan(position, tokens.shape[1], self.self_cache.slots)
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
        return self.self_cache.zeros(batch)

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


# -- registration: the presets as models ------------------------------------------------------------------

# The config values a preset exposes as options (rope_theta and eps stay the paper's).
CONFIG_OPTIONS = ("d_model", "encoder_layers", "decoder_layers", "heads", "kv_heads", "head_dim", "ffn_dim",
                  "max_source", "max_target", "vocab_size")  # fmt: skip


def _build_encoder_decoder(name: str, cfg: Seq2SeqConfig) -> ModelSpec:
    model = EncoderDecoder(cfg).eval()
    graphs, layout = seq2seq_graphs(model)
    teacher = (*graphs[0].example_inputs, torch.tensor([[257, 104]], dtype=torch.int32))
    return ModelSpec(
        name=name, family="seq2seq", module=model, example_inputs=teacher, input_names=("src", "src_mask", "tgt"),
        output_names=("logits",), config={k: getattr(cfg, k) for k in CONFIG_OPTIONS}, task="seq2seq",
        graphs=graphs, extras={"seq2seq": layout},
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
