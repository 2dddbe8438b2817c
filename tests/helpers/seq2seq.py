"""The small encoder-decoder the seq2seq model and generation tests build (random weights)."""

from __future__ import annotations

from edgekit.models.seq2seq import Seq2SeqConfig

TINY = Seq2SeqConfig(d_model=32, encoder_layers=2, decoder_layers=2, heads=4, kv_heads=2, head_dim=8, ffn_dim=64,
                     max_source=12, max_target=10)  # fmt: skip
