"""The PyTorch reference runner: the same encode / cross-K/V / cached decode steps the bundles export."""

from __future__ import annotations

import numpy as np
import torch

from edgekit.generation.tokenizer import ByteTokenizer
from edgekit.models.seq2seq import EncoderDecoder


def pad_source(ids: list[int], length: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, length) ids padded at the end and their 1/0 mask."""
    src = torch.full((1, length), pad_id, dtype=torch.int64)
    mask = torch.zeros(1, length)
    src[0, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
    mask[0, : len(ids)] = 1.0
    return src, mask


class TorchSeq2SeqRunner:
    def __init__(self, model: EncoderDecoder, tokenizer: ByteTokenizer | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer or ByteTokenizer()
        self.max_source, self.max_target = model.cfg.max_source, model.cfg.max_target

    @torch.no_grad()
    def start(self, source: list[int]) -> None:
        src, self._mask = pad_source(source, self.max_source, self.tokenizer.pad_id)
        self._cross = self.model.cross_kv(self.model.encode(src, self._mask))
        self._cache = self.model.empty_cache()

    @torch.no_grad()
    def step(self, token: int, position: int) -> np.ndarray:
        tokens = torch.tensor([[token]], dtype=torch.int64)
        logits, self._cache = self.model.decode_step(tokens, torch.tensor([float(position)]), self._cache, self._cross,
                                                     self._mask)  # fmt: skip
        return logits[0].numpy()
