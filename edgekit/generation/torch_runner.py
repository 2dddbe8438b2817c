"""The PyTorch reference runner: the same encode / cross-K/V / cached decode steps the bundles export."""

from __future__ import annotations

import numpy as np
import torch

from edgekit.generation.tokenizer import ByteTokenizer, Tokenizer
from edgekit.models.encdec_interface import EncoderDecoderModel


class TorchSeq2SeqRunner:
    def __init__(self, model: EncoderDecoderModel, tokenizer: Tokenizer | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer or ByteTokenizer()
        self.max_source, self.max_target = model.max_source, model.self_cache.slots

    @torch.no_grad()
    def start(self, source: list[int]) -> None:
        src, self._mask = (torch.from_numpy(a) for a in self.tokenizer.pad(source, self.max_source))
        self._cross = self.model.cross_kv(self.model.encode(src, self._mask))
        self._cache = self.model.empty_cache()

    @torch.no_grad()
    def step(self, token: int, position: int) -> np.ndarray:
        tokens = torch.tensor([[token]], dtype=torch.int64)
        logits, self._cache = self.model.decode_step(tokens, torch.tensor([float(position)]), self._cache, self._cross,
                                                     self._mask)  # fmt: skip
        return logits[0].numpy()
