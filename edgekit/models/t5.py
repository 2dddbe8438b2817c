"""T5-style encoder-decoders, built to load Hugging Face T5 checkpoints by parameter name.

The module tree and parameter names follow transformers' ``T5ForConditionalGeneration`` (``shared``,
``encoder.block.N.layer.M.SelfAttention.q`` ...), so a checkpoint's tensors load without renaming; the
computation is rewritten for export: RMS norms as a matmul, attention as 3-D products, and the relative
position bias read from constant bucket tables rather than computed with logs and integer ops in the graph.

The model implements :class:`edgekit.models.encdec_interface.EncoderDecoderModel`, so the same encoder and
decoder-step graphs, bundle runner and generation loop serve it and the seq2seq family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.models.encdec_blocks import RMSNorm, cache_plan, causal_mask, grouped_attention, padding_mask, write_cache
from edgekit.models.encdec_interface import CacheLayout
from edgekit.models.layers import step_slice
from edgekit.models.seq2seq_graphs import checkpoint_spec
from edgekit.models.spec import ModelSpec, register_config_model

# transformers' activation names (ACT2FN) as T5 configs spell them
ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


@dataclass(frozen=True)
class T5Config:
    vocab_size: int = 320
    d_model: int = 64
    d_kv: int = 16
    d_ff: int = 128
    num_layers: int = 2
    num_decoder_layers: int = 2
    num_heads: int = 4
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    dense_act_fn: str = "relu"
    is_gated_act: bool = False
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool = True  # logits from sequence_output * d_model**-0.5 (T5 v1.0 with tied embeddings)
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    max_source: int = 32  # the exported encoder's fixed source length
    max_target: int = 32  # the decoder's KV cache length

    def __post_init__(self) -> None:
        if self.dense_act_fn not in ACTIVATIONS:
            raise ValueError(f"activation {self.dense_act_fn!r} is not supported; known: {sorted(ACTIVATIONS)}")

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Our config values from a transformers ``config.json`` (older files spell the activation through
        ``feed_forward_proj`` only, and scale the output exactly when the embedding is tied)."""
        proj = str(config.get("feed_forward_proj", "relu"))
        gated = config.get("is_gated_act", proj.startswith("gated-"))
        act = config.get("dense_act_fn") or proj.split("-")[-1]
        act = "gelu_new" if act == "gelu" and proj == "gated-gelu" else act
        tied = bool(config.get("tie_word_embeddings", True))
        values = {
            "vocab_size": config["vocab_size"], "d_model": config["d_model"], "d_kv": config["d_kv"],
            "d_ff": config["d_ff"], "num_layers": config["num_layers"],
            "num_decoder_layers": config.get("num_decoder_layers") or config["num_layers"],
            "num_heads": config["num_heads"],
            "relative_attention_num_buckets": config.get("relative_attention_num_buckets", 32),
            "relative_attention_max_distance": config.get("relative_attention_max_distance", 128),
            "layer_norm_epsilon": config.get("layer_norm_epsilon", 1e-6), "dense_act_fn": act,
            "is_gated_act": bool(gated), "tie_word_embeddings": tied,
            "scale_decoder_outputs": bool(config.get("scale_decoder_outputs", tied)),
            "pad_token_id": config.get("pad_token_id", 0), "eos_token_id": _first(config.get("eos_token_id", 1)),
        }  # fmt: skip
        start = config.get("decoder_start_token_id")
        values["decoder_start_token_id"] = values["pad_token_id"] if start is None else start
        return values


def _first(value: Any) -> int:
    return int(value[0]) if isinstance(value, list | tuple) else int(value)


def relative_buckets(relative: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5's bucket of each relative position (key - query): exact for small distances, logarithmic bins up to
    ``max_distance``; bidirectional buckets give later keys their own half. Computed once per table, in float32
    as the reference implementation does, so the bins fall on the same side of every boundary."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        distance = -torch.clamp(relative, max=0)
    exact = num_buckets // 2
    large = (
        exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact) * (num_buckets - exact)).long()
    )
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(distance < exact, distance, large)


def bucket_table(queries: int, keys: int, bidirectional: bool, cfg: T5Config) -> torch.Tensor:
    """(queries, keys) buckets for query positions 0..queries-1 against key positions 0..keys-1."""
    relative = torch.arange(keys).reshape(1, -1) - torch.arange(queries).reshape(-1, 1)
    return relative_buckets(relative, bidirectional, cfg.relative_attention_num_buckets,
                            cfg.relative_attention_max_distance)  # fmt: skip


class T5Attention(nn.Module):
    """Multi-head attention without score scaling (T5 folds it into the initialisation); the first layer of
    each stack owns the relative position embedding shared by all its layers."""

    def __init__(self, cfg: T5Config, relative_bias: bool):
        super().__init__()
        self.cfg = cfg
        inner = cfg.num_heads * cfg.d_kv
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.k = nn.Linear(cfg.d_model, inner, bias=False)
        self.v = nn.Linear(cfg.d_model, inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        if relative_bias:
            self.relative_attention_bias = nn.Embedding(cfg.relative_attention_num_buckets, cfg.num_heads)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, self.cfg.num_heads, self.cfg.d_kv).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split(self.k(x)), self._split(self.v(x))

    def attend(self, x, k, v, mask, bias=None) -> torch.Tensor:
        out = grouped_attention(self._split(self.q(x)), k, v, self.cfg.num_heads, 1.0, mask, bias)
        return self.o(out)


class T5DenseAct(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.act = ACTIVATIONS[cfg.dense_act_fn]
        self.wi, self.wo = nn.Linear(cfg.d_model, cfg.d_ff, bias=False), nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(self.act(self.wi(x)))


class T5DenseGatedAct(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.act = ACTIVATIONS[cfg.dense_act_fn]
        self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(self.act(self.wi_0(x)) * self.wi_1(x))


class _Sublayer(nn.Module):
    """One of a block's residual branches: its norm plus an attention or feed-forward module, under the
    attribute name the checkpoint uses."""

    def __init__(self, name: str, body: nn.Module, cfg: T5Config):
        super().__init__()
        self.name = name
        self.add_module(name, body)
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)

    @property
    def body(self) -> nn.Module:
        return getattr(self, self.name)


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config, decoder: bool, relative_bias: bool):
        super().__init__()
        dense = T5DenseGatedAct(cfg) if cfg.is_gated_act else T5DenseAct(cfg)
        parts = [_Sublayer("SelfAttention", T5Attention(cfg, relative_bias), cfg)]
        if decoder:
            parts.append(_Sublayer("EncDecAttention", T5Attention(cfg, relative_bias=False), cfg))
        parts.append(_Sublayer("DenseReluDense", dense, cfg))
        self.layer = nn.ModuleList(parts)

    @property
    def self_attention(self) -> T5Attention:
        return self.layer[0].body

    def self_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.self_attention.project_kv(self.layer[0].layer_norm(x))

    def forward(self, x, self_kv, self_mask, bias, cross_kv=None, cross_mask=None) -> torch.Tensor:
        x = x + self.self_attention.attend(self.layer[0].layer_norm(x), *self_kv, self_mask, bias)
        if cross_kv is not None:
            cross = self.layer[1]
            x = x + cross.body.attend(cross.layer_norm(x), *cross_kv, cross_mask)
        ff = self.layer[-1]
        return x + ff.body(ff.layer_norm(x))


class T5Stack(nn.Module):
    def __init__(self, cfg: T5Config, decoder: bool):
        super().__init__()
        layers = cfg.num_decoder_layers if decoder else cfg.num_layers
        self.block = nn.ModuleList(T5Block(cfg, decoder, relative_bias=i == 0) for i in range(layers))
        self.final_layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)

    @property
    def relative_embedding(self) -> nn.Embedding:
        return self.block[0].self_attention.relative_attention_bias

    def position_bias(self, buckets: torch.Tensor) -> torch.Tensor:
        """(1, heads, Q, K) bias of a (Q, K) bucket table (an embedding lookup of constant ids)."""
        q, k = buckets.shape
        return self.relative_embedding(buckets).permute(2, 0, 1).reshape(1, -1, q, k)


class T5(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.cfg = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = T5Stack(cfg, decoder=False)
        self.decoder = T5Stack(cfg, decoder=True)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        nn.init.normal_(self.shared.weight, std=1.0)
        # constant bucket ids: the encoder's source x source, the decoder's (query position, cache slot)
        self.register_buffer("encoder_buckets", bucket_table(cfg.max_source, cfg.max_source, True, cfg), False)
        self.register_buffer("step_buckets", bucket_table(cfg.max_target, cfg.max_target, False, cfg), False)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.decoder.final_layer_norm(x)
        if self.cfg.scale_decoder_outputs:
            x = x * self.cfg.d_model**-0.5
        return F.linear(x, self.shared.weight) if self.cfg.tie_word_embeddings else self.lm_head(x)

    # -- the device interface (EncoderDecoderModel) ------------------------------------------------
    @property
    def max_source(self) -> int:
        return self.cfg.max_source

    @property
    def self_cache(self) -> CacheLayout:
        cfg = self.cfg
        return CacheLayout(cfg.num_decoder_layers, cfg.num_heads, cfg.d_kv, cfg.max_target)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        steps = src.shape[1]
        buckets = self.encoder_buckets if steps == self.cfg.max_source else bucket_table(steps, steps, True, self.cfg)
        bias = self.encoder.position_bias(buckets)
        mask = padding_mask(src_mask)
        x = self.shared(src)
        for block in self.encoder.block:
            x = block(x, block.self_kv(x), mask, bias)
        return self.encoder.final_layer_norm(x)

    def cross_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [block.layer[1].body.project_kv(memory) for block in self.decoder.block]

    def decode_step(self, tokens, position, cache, cross, src_mask):
        """The interface's decode step; the position bias of the new tokens is their rows of the
        (position, slot) table, picked by the one-hot write rows (a matmul, no gather by position)."""
        cfg, count = self.cfg, tokens.shape[1]
        write, visible, _ = cache_plan(position, count, cfg.max_target)
        slots = cfg.max_target
        table = self.decoder.relative_embedding(self.step_buckets).reshape(1, slots, slots * cfg.num_heads)
        # a 3-D product: XNNPACK takes bmm of two computed operands, not mm
        bias = torch.bmm(write.reshape(1, count, slots), table).reshape(count, slots, cfg.num_heads).permute(2, 0, 1)
        bias = bias.reshape(1, cfg.num_heads, count, slots)
        visible = visible.reshape(1, 1, -1) if count == 1 else visible
        cross_mask = padding_mask(src_mask)
        x = self.shared(tokens)
        new_cache = []
        for block, layer_cache, kv in zip(self.decoder.block, cache, cross, strict=True):
            self_kv = write_cache(layer_cache, *block.self_kv(x), write)
            new_cache.append(self_kv)
            x = block(x, self_kv, visible, bias, kv, cross_mask)
        logits = self._logits(step_slice(x, count - 1, 1))
        return logits.reshape(logits.shape[0], logits.shape[2]), new_cache

    def empty_cache(self, batch: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.self_cache.zeros(batch)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, vocab) of the decoder inputs ``tgt``."""
        cross = self.cross_kv(self.encode(src, src_mask))
        steps = tgt.shape[1]
        bias = self.decoder.position_bias(bucket_table(steps, steps, False, self.cfg))
        mask = causal_mask(steps).reshape(1, steps, steps)
        cross_mask = padding_mask(src_mask)
        x = self.shared(tgt)
        for block, kv in zip(self.decoder.block, cross, strict=True):
            x = block(x, block.self_kv(x), mask, bias, kv, cross_mask)
        return self._logits(x)

    # -- checkpoints ---------------------------------------------------------------------------------
    def remap_state_dict(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """A transformers checkpoint's tensors under our names: the tied copies of ``shared`` dropped, and the
        buffers edgekit derives from the config (norm averaging columns) taken from this model."""
        tied = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
        if self.cfg.tie_word_embeddings:
            tied.add("lm_head.weight")
        mapped = {k: v for k, v in state.items() if k not in tied}
        derived = {k: v for k, v in self.state_dict().items() if k.endswith(".mean_weight")}
        return {**derived, **mapped}, {}


def build_t5(cfg: T5Config) -> ModelSpec:
    """A T5 (random weights until a checkpoint's load) with its encoder and decoder-step graphs."""
    return checkpoint_spec("t5", T5(cfg))


register_config_model(
    "t5", "seq2seq", T5Config(), build_t5,
    "T5-style encoder-decoder (relative position buckets, RMS norms): give a local Hugging Face folder "
    "(config.json + safetensors) to load a checkpoint; exported as encoder + decoder-step graphs",
)  # fmt: skip
