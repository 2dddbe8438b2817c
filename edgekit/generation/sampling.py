"""Greedy and temperature / top-k decoding over any runner (PyTorch or a bundle's runtimes), numpy only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgekit.errors import InputError
from edgekit.generation.tokenizer import Tokenizer
from edgekit.validate import softmax


class Seq2SeqRunner(Protocol):
    """What generation needs from an encoder-decoder, wherever it runs."""

    tokenizer: Tokenizer
    max_source: int  # source tokens the encoder takes
    max_target: int  # decoder positions the KV cache holds

    def start(self, source: list[int]) -> None:
        """Encode a source and reset the decoder cache for a new request."""

    def step(self, token: int, position: int) -> np.ndarray:
        """Feed one decoder token at ``position``; the next-token logits (vocab,)."""


@dataclass(frozen=True)
class Sampling:
    """``temperature`` 0 is greedy; otherwise softmax(logits / temperature) over the ``top_k`` best (0: all)."""

    temperature: float = 0.0
    top_k: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0:
            raise InputError(f"temperature and top-k must be >= 0, got {self.temperature} and {self.top_k}")

    def chooser(self) -> Callable[[np.ndarray], int]:
        if self.temperature == 0.0:
            return lambda logits: int(np.argmax(logits))
        rng = np.random.default_rng(self.seed)

        def sample(logits: np.ndarray) -> int:
            scaled = logits.astype(np.float64) / self.temperature
            if self.top_k:
                cutoff = np.sort(scaled)[-min(self.top_k, len(scaled))]
                scaled = np.where(scaled >= cutoff, scaled, -np.inf)
            probs = softmax(scaled)
            return int(rng.choice(len(probs), p=probs))

        return sample


@dataclass(frozen=True)
class Generation:
    tokens: tuple[int, ...]  # generated ids, without the stop token
    text: str
    stopped_by: str  # "stop token" or "max new tokens"


def generate(
    runner: Seq2SeqRunner,
    prompt: str,
    max_new_tokens: int = 32,
    sampling: Sampling = Sampling(),
    stop_ids: tuple[int, ...] | None = None,
    on_token: Callable[[int, str], None] | None = None,
) -> Generation:
    """Encode ``prompt``, then decode token by token until a stop token or ``max_new_tokens``.

    The decoder starts from BOS at position 0, so at most ``max_target - 1`` new tokens fit the cache: asking
    for more is an error before anything runs (no silent truncation, no sliding window).
    """
    tok = runner.tokenizer
    source = tok.encode(prompt, max_len=runner.max_source, what="prompt")
    capacity = runner.max_target - 1
    if max_new_tokens < 1 or max_new_tokens > capacity:
        raise InputError(
            f"--max-new-tokens {max_new_tokens}: this model's decoder cache holds {runner.max_target} positions, "
            f"so 1..{capacity} new tokens fit"
        )
    stops = set(stop_ids if stop_ids is not None else (tok.eos_id,))
    choose = sampling.chooser()
    runner.start(source)
    token, generated, shown = tok.bos_id, [], ""
    for position in range(max_new_tokens):
        token = choose(runner.step(token, position))
        if token in stops:
            return Generation(tuple(generated), tok.decode(generated), "stop token")
        generated.append(token)
        if on_token:
            # the text this token adds: decoding the whole output keeps subword spacing right, and a multi-byte
            # character is held back until its last byte has come
            text = tok.decode(generated)
            piece = "" if text.endswith("\ufffd") else text[len(shown) :]
            shown += piece
            on_token(token, piece)
    return Generation(tuple(generated), tok.decode(generated), "max new tokens")
