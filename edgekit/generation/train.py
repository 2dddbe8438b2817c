"""Train an encoder-decoder on a code-defined task and measure held-out exact match (PyTorch)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edgekit.generation.tokenizer import ByteTokenizer
from edgekit.models.seq2seq import EncoderDecoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Seq2SeqTrainResult:
    epochs: int
    train_loss: float
    exact_match: float  # held-out, greedy decoding with the KV cache
    seconds: float


def batch_tensors(pairs: list[tuple[str, str]], model: EncoderDecoder, tok: ByteTokenizer):
    """Source ids + mask (B, max_source), decoder inputs BOS + target (B, T) and labels target + EOS (-100 pad)."""
    cfg = model.cfg
    sources = [tok.pad(tok.encode(source, cfg.max_source, "source"), cfg.max_source) for source, _ in pairs]
    src = torch.from_numpy(np.concatenate([s for s, _ in sources]))
    mask = torch.from_numpy(np.concatenate([m for _, m in sources]))
    longest = max(len(t.encode()) for _, t in pairs) + 1
    dec_in = torch.full((len(pairs), longest), tok.pad_id, dtype=torch.int64)
    labels = torch.full((len(pairs), longest), -100, dtype=torch.int64)
    for i, (_, target) in enumerate(pairs):
        t = tok.encode(target, cfg.max_target - 1, "target")
        dec_in[i, : len(t) + 1] = torch.tensor([tok.bos_id, *t])
        labels[i, : len(t) + 1] = torch.tensor([*t, tok.eos_id])
    return src, mask, dec_in, labels


@torch.no_grad()
def greedy_batch(model: EncoderDecoder, pairs: list[tuple[str, str]], tok: ByteTokenizer, max_new: int) -> list[str]:
    """Greedy outputs of a batch through encode / cross_kv / decode_step (the path the bundles take)."""
    model.eval()
    src, mask, _, _ = batch_tensors(pairs, model, tok)
    cross = model.cross_kv(model.encode(src, mask))
    cache = model.empty_cache(len(pairs))
    token = torch.full((len(pairs), 1), tok.bos_id, dtype=torch.int64)
    outputs: list[list[int]] = [[] for _ in pairs]
    done = torch.zeros(len(pairs), dtype=torch.bool)
    for position in range(max_new):
        logits, cache = model.decode_step(token, torch.tensor([float(position)]), cache, cross, mask)
        token = logits.argmax(-1, keepdim=True)
        for i, t in enumerate(token[:, 0].tolist()):
            if not done[i]:
                if t == tok.eos_id:
                    done[i] = True
                else:
                    outputs[i].append(t)
        if bool(done.all()):
            break
    return [tok.decode(o) for o in outputs]


def exact_match(model: EncoderDecoder, pairs: list[tuple[str, str]], tok: ByteTokenizer, batch: int = 256) -> float:
    max_new = model.cfg.max_target - 1
    hits = 0
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        hits += sum(out == t for out, (_, t) in zip(greedy_batch(model, chunk, tok, max_new), chunk, strict=True))
    return hits / len(pairs)


def train_seq2seq(
    model: EncoderDecoder,
    train_pairs: list[tuple[str, str]],
    test_pairs: list[tuple[str, str]],
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    tokenizer: ByteTokenizer | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> Seq2SeqTrainResult:
    tok = tokenizer or ByteTokenizer()
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(train_pairs) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(1, steps), pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    start, loss_value = time.perf_counter(), float("nan")
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train_pairs), generator=generator).tolist()
        total = 0.0
        for i in range(0, len(order), batch_size):
            src, mask, dec_in, labels = batch_tensors([train_pairs[j] for j in order[i : i + batch_size]], model, tok)
            logits = model(src, mask, dec_in)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(labels)
        loss_value = total / len(order)
        log.info("epoch %d/%d: loss %.4f", epoch, epochs, loss_value)
        if on_epoch:
            on_epoch(epoch, loss_value)
    return Seq2SeqTrainResult(epochs, loss_value, exact_match(model, test_pairs, tok), time.perf_counter() - start)
