"""BART-style encoder-decoders, built to load Hugging Face BART checkpoints by parameter name.

Post-norm blocks (LayerNorm after each residual add), learned positions offset by 2, a LayerNorm on the
embeddings, biased projections, scaled dot-product attention, and the LM head tied to the shared embedding
plus ``final_logits_bias``. Parameter names follow transformers' ``BartForConditionalGeneration``
(``model.encoder.layers.N.self_attn.q_proj`` ...). The model implements
:class:`edgekit.models.encdec_interface.EncoderDecoderModel`, so the same graphs, runner and generation loop
serve it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.models.encdec_blocks import (
    cache_plan,
    causal_mask,
    float_range,
    grouped_attention,
    padding_mask,
    write_cache,
)
from edgekit.models.encdec_interface import CacheLayout
from edgekit.models.layers import LayerNorm, step_slice
from edgekit.models.seq2seq_graphs import checkpoint_spec
from edgekit.models.spec import ModelSpec, register_config_model
from edgekit.models.t5 import ACTIVATIONS

POSITION_OFFSET = 2  # BART's learned positions start at row 2 of the table


@dataclass(frozen=True)
class BartConfig:
    vocab_size: int = 320
    d_model: int = 64
    encoder_layers: int = 2
    decoder_layers: int = 2
    encoder_attention_heads: int = 4
    decoder_attention_heads: int = 4
    encoder_ffn_dim: int = 128
    decoder_ffn_dim: int = 128
    activation_function: str = "gelu"
    max_position_embeddings: int = 64
    scale_embedding: bool = False
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    decoder_start_token_id: int = 2
    max_source: int = 32
    max_target: int = 32

    def __post_init__(self) -> None:
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation_function!r} is not supported; known: {sorted(ACTIVATIONS)}")
        longest = max(self.max_source, self.max_target)
        if longest > self.max_position_embeddings:
            raise ValueError(f"max_source / max_target ({longest}) exceed the {self.max_position_embeddings} "
                             "learned positions")  # fmt: skip

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> dict[str, Any]:
        keys = [f.name for f in cls.__dataclass_fields__.values() if f.name not in ("max_source", "max_target")]
        values = {k: config[k] for k in keys if k in config and config[k] is not None}
        for required in ("vocab_size", "d_model"):
            values[required] = config[required]
        if config.get("normalize_before") or config.get("add_final_layer_norm"):
            raise ValueError("pre-norm BART variants (mBART) are not supported")
        # the export sizes may not exceed the learned positions
        values["max_source"] = values["max_target"] = min(32, int(values.get("max_position_embeddings", 32)))
        return values


class BartAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split(self.k_proj(x)), self._split(self.v_proj(x))

    def attend(self, x, k, v, mask) -> torch.Tensor:
        q = self._split(self.q_proj(x))
        return self.out_proj(grouped_attention(q, k, v, self.heads, self.head_dim**-0.5, mask))


class BartEncoderLayer(nn.Module):
    def __init__(self, cfg: BartConfig):
        super().__init__()
        d = cfg.d_model
        self.self_attn = BartAttention(d, cfg.encoder_attention_heads)
        self.self_attn_layer_norm = LayerNorm(d, cfg.layer_norm_eps)
        self.fc1, self.fc2 = nn.Linear(d, cfg.encoder_ffn_dim), nn.Linear(cfg.encoder_ffn_dim, d)
        self.final_layer_norm = LayerNorm(d, cfg.layer_norm_eps)
        self.act = ACTIVATIONS[cfg.activation_function]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.self_attn_layer_norm(x + self.self_attn.attend(x, *self.self_attn.project_kv(x), mask))
        return self.final_layer_norm(x + self.fc2(self.act(self.fc1(x))))


class BartDecoderLayer(nn.Module):
    def __init__(self, cfg: BartConfig):
        super().__init__()
        d = cfg.d_model
        self.self_attn = BartAttention(d, cfg.decoder_attention_heads)
        self.self_attn_layer_norm = LayerNorm(d, cfg.layer_norm_eps)
        self.encoder_attn = BartAttention(d, cfg.decoder_attention_heads)
        self.encoder_attn_layer_norm = LayerNorm(d, cfg.layer_norm_eps)
        self.fc1, self.fc2 = nn.Linear(d, cfg.decoder_ffn_dim), nn.Linear(cfg.decoder_ffn_dim, d)
        self.final_layer_norm = LayerNorm(d, cfg.layer_norm_eps)
        self.act = ACTIVATIONS[cfg.activation_function]

    def forward(self, x, self_kv, self_mask, cross_kv, cross_mask) -> torch.Tensor:
        x = self.self_attn_layer_norm(x + self.self_attn.attend(x, *self_kv, self_mask))
        x = self.encoder_attn_layer_norm(x + self.encoder_attn.attend(x, *cross_kv, cross_mask))
        return self.final_layer_norm(x + self.fc2(self.act(self.fc1(x))))


class _Stack(nn.Module):
    def __init__(self, cfg: BartConfig, layers: nn.ModuleList):
        super().__init__()
        self.embed_positions = nn.Embedding(cfg.max_position_embeddings + POSITION_OFFSET, cfg.d_model)
        self.layers = layers
        self.layernorm_embedding = LayerNorm(cfg.d_model, cfg.layer_norm_eps)


class _Model(nn.Module):
    def __init__(self, cfg: BartConfig):
        super().__init__()
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = _Stack(cfg, nn.ModuleList(BartEncoderLayer(cfg) for _ in range(cfg.encoder_layers)))
        self.decoder = _Stack(cfg, nn.ModuleList(BartDecoderLayer(cfg) for _ in range(cfg.decoder_layers)))


class Bart(nn.Module):
    def __init__(self, cfg: BartConfig):
        super().__init__()
        self.cfg = cfg
        self.model = _Model(cfg)
        self.register_buffer("final_logits_bias", torch.zeros(1, cfg.vocab_size))
        self.embed_scale = math.sqrt(cfg.d_model) if cfg.scale_embedding else 1.0
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    def _embed(self, ids: torch.Tensor, positions: torch.Tensor, stack: _Stack) -> torch.Tensor:
        x = self.model.shared(ids)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        return stack.layernorm_embedding(x + positions)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.model.shared.weight) + self.final_logits_bias

    # -- the device interface (EncoderDecoderModel) ------------------------------------------------
    @property
    def max_source(self) -> int:
        return self.cfg.max_source

    @property
    def self_cache(self) -> CacheLayout:
        cfg = self.cfg
        heads = cfg.decoder_attention_heads
        return CacheLayout(cfg.decoder_layers, heads, cfg.d_model // heads, cfg.max_target)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        steps = src.shape[1]
        positions = self.model.encoder.embed_positions.weight[POSITION_OFFSET : POSITION_OFFSET + steps]
        x = self._embed(src, positions, self.model.encoder)
        mask = padding_mask(src_mask)
        for layer in self.model.encoder.layers:
            x = layer(x, mask)
        return x

    def cross_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.encoder_attn.project_kv(memory) for layer in self.model.decoder.layers]

    def decode_step(self, tokens, position, cache, cross, src_mask):
        """The interface's decode step; the learned position rows are picked by a one-hot matmul
        over the whole table (a float position, no gather)."""
        cfg, count = self.cfg, tokens.shape[1]
        write, visible, steps = cache_plan(position, count, cfg.max_target)
        table = self.model.decoder.embed_positions.weight
        # the position each table row stands for (the first two rows are BART's offset): no scalar add in the graph
        rows = float_range(-POSITION_OFFSET, table.shape[0] - POSITION_OFFSET).reshape(1, -1)
        positions = torch.matmul(torch.relu(1.0 - torch.abs(rows - steps)), table)
        visible = visible.reshape(1, 1, -1) if count == 1 else visible
        cross_mask = padding_mask(src_mask)
        x = self._embed(tokens, positions, self.model.decoder)
        new_cache = []
        for layer, layer_cache, kv in zip(self.model.decoder.layers, cache, cross, strict=True):
            self_kv = write_cache(layer_cache, *layer.self_attn.project_kv(x), write)
            new_cache.append(self_kv)
            x = layer(x, self_kv, visible, kv, cross_mask)
        logits = self._logits(step_slice(x, count - 1, 1))
        return logits.reshape(logits.shape[0], logits.shape[2]), new_cache

    def empty_cache(self, batch: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.self_cache.zeros(batch)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, vocab) of the decoder inputs ``tgt``."""
        cross = self.cross_kv(self.encode(src, src_mask))
        steps = tgt.shape[1]
        positions = self.model.decoder.embed_positions.weight[POSITION_OFFSET : POSITION_OFFSET + steps]
        x = self._embed(tgt, positions, self.model.decoder)
        mask, cross_mask = causal_mask(steps).reshape(1, steps, steps), padding_mask(src_mask)
        for layer, kv in zip(self.model.decoder.layers, cross, strict=True):
            x = layer(x, layer.self_attn.project_kv(x), mask, kv, cross_mask)
        return self._logits(x)

    # -- checkpoints ---------------------------------------------------------------------------------
    def remap_state_dict(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Drop the tied copies of ``model.shared`` a transformers checkpoint may hold."""
        tied = {"model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"}
        return {k: v for k, v in state.items() if k not in tied}, {}


def build_bart(cfg: BartConfig) -> ModelSpec:
    """A Bart (random weights until a checkpoint's load) with its encoder and decoder-step graphs."""
    return checkpoint_spec("bart", Bart(cfg))


register_config_model(
    "bart", "seq2seq", BartConfig(), build_bart,
    "BART-style encoder-decoder (post-norm, learned positions): give a local Hugging Face folder "
    "(config.json + safetensors) to load a checkpoint; exported as encoder + decoder-step graphs",
)  # fmt: skip
