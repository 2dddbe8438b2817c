"""The device interface of encoder-decoder models, and of the decoder-only twin.

A device runs an encoder-decoder as three calls: ``encode`` once per request, ``cross_kv`` once per request
(every decoder layer's cross-attention keys and values), then ``decode_step`` a token at a time against a
self-attention KV cache of fixed length that is an explicit input and output (the Stateful Conformer pattern).
The seq2seq family, T5 and BART implement :class:`EncoderDecoderModel`; the export graphs
(:mod:`edgekit.models.seq2seq_graphs`), the PyTorch reference runner and the generation loop depend on this
interface only, never on a family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

KV = tuple[torch.Tensor, torch.Tensor]  # one layer's keys and values, each (B, kv_heads, slots, head_dim)


@dataclass(frozen=True)
class CacheLayout:
    """The geometry of a self-attention KV cache: one (keys, values) pair per layer, ``slots`` positions long."""

    layers: int
    kv_heads: int
    head_dim: int
    slots: int

    def shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        return (batch, self.kv_heads, self.slots, self.head_dim)

    def zeros(self, batch: int = 1) -> list[KV]:
        """An empty cache (nothing written: every slot is masked until a step writes it)."""
        return [(torch.zeros(self.shape(batch)), torch.zeros(self.shape(batch))) for _ in range(self.layers)]


@runtime_checkable
class EncoderDecoderModel(Protocol):
    """What the encoder / decoder-step graphs and the runners call on an encoder-decoder."""

    @property
    def max_source(self) -> int:
        """The exported encoder's fixed source length (and the cross K/V's length)."""

    @property
    def self_cache(self) -> CacheLayout:
        """The decoder's self-attention cache (``slots``: the longest target, positions 0..slots-1)."""

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """(B, S) token ids and their 1/0 mask -> encoder states (B, S, d)."""

    def cross_kv(self, memory: torch.Tensor) -> list[KV]:
        """Each decoder layer's cross-attention keys and values of the encoder states."""

    def decode_step(
        self, tokens: torch.Tensor, position: torch.Tensor, cache: list[KV], cross: list[KV], src_mask: torch.Tensor
    ) -> tuple[torch.Tensor, list[KV]]:
        """New token(s) (B, K) from ``position`` (a float (1,) tensor holding an integer) -> next-token logits
        (B, vocab) after the last of them, and the cache with their keys and values written in."""

    def empty_cache(self, batch: int = 1) -> list[KV]:
        """The cache before the first step."""


@runtime_checkable
class CausalDecoderModel(Protocol):
    """What the prefill / decoder-step graphs call on a decoder-only model (the encoder-decoder's twin)."""

    @property
    def self_cache(self) -> CacheLayout:
        """The cache over prompt and target (``slots``: their total length)."""

    def step(
        self, tokens: torch.Tensor, position: torch.Tensor, cache: list[KV] | None
    ) -> tuple[torch.Tensor, list[KV]]:
        """Token(s) (B, K) from ``position``: the prompt in one call with ``cache`` None (prefill), then one
        token a call -> logits after the last token, and the cache with theirs written in."""

    def empty_cache(self, batch: int = 1) -> list[KV]:
        """The cache before the prefill."""
