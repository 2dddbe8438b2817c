"""The encoder-decoder's cached decode path against its teacher-forced forward, and its building blocks."""

from __future__ import annotations

import pytest
import torch

from edgekit.models.encdec_blocks import apply_rotary, rotary, rotate_half_weight
from edgekit.models.seq2seq import EncoderDecoder, Seq2SeqConfig
from tests.helpers.seq2seq import TINY


@pytest.mark.parametrize("kv_heads", [1, 2, 4])  # multi-query, grouped, multi-head
def test_cached_decoding_equals_teacher_forcing(kv_heads):
    cfg = Seq2SeqConfig(**{**TINY.__dict__, "kv_heads": kv_heads})
    torch.manual_seed(0)
    model = EncoderDecoder(cfg).eval()
    src = torch.randint(0, 256, (2, cfg.max_source))
    mask = torch.ones(2, cfg.max_source)
    mask[1, 5:] = 0.0  # the second source is padded after 5 tokens
    tgt = torch.randint(0, 256, (2, 7))
    with torch.no_grad():
        full = model(src, mask, tgt)
        cross = model.cross_kv(model.encode(src, mask))
        cache, steps = model.empty_cache(2), []
        for t in range(tgt.shape[1]):
            logits, cache = model.decode_step(tgt[:, t : t + 1], torch.tensor([float(t)]), cache, cross, mask)
            steps.append(logits)
    assert torch.max(torch.abs(torch.stack(steps, 1) - full)) <= 1e-5
    # cache slots after the last written position are still zero: nothing was written ahead
    assert float(cache[0][0][:, :, tgt.shape[1] :].abs().sum()) == 0.0


def test_padding_is_invisible():
    torch.manual_seed(0)
    model = EncoderDecoder(TINY).eval()
    src = torch.randint(0, 256, (1, TINY.max_source))
    mask = torch.zeros(1, TINY.max_source)
    mask[0, :4] = 1.0
    other = src.clone()
    other[0, 4:] = torch.randint(0, 256, (TINY.max_source - 4,))  # different padding content
    tgt = torch.randint(0, 256, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(model(src, mask, tgt), model(other, mask, tgt))


def test_rotary_scores_depend_on_relative_position_only():
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pq: int, pk: int) -> float:
        cq, sq = rotary(torch.tensor([pq]), 8, 10000.0)
        ck, sk = rotary(torch.tensor([pk]), 8, 10000.0)
        r = rotate_half_weight(8)
        return float((apply_rotary(q, cq, sq, r) * apply_rotary(k, ck, sk, r)).sum())

    assert score(5, 2) == pytest.approx(score(-1, -4), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)


def test_one_embedding_table_is_shared():
    model = EncoderDecoder(TINY)
    names = [n for n, p in model.named_parameters() if p.shape == model.embed.weight.shape]
    assert names == ["embed.weight"]  # the LM head reuses it: no second vocab-sized matrix


def test_config_is_checked():
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        Seq2SeqConfig(heads=4, kv_heads=3)


def test_decoder_only_twin_matches_parameters_and_caches_correctly():
    from edgekit.models.seq2seq import decoder_only_twin, parameter_count

    torch.manual_seed(0)
    twin = decoder_only_twin(TINY).eval()
    ours = parameter_count(EncoderDecoder(TINY))
    assert abs(parameter_count(twin) - ours) / ours < 0.05
    seq = torch.randint(0, 256, (2, 9))
    with torch.no_grad():
        full = twin(seq)
        logits, cache = twin.step(seq[:, :5], torch.tensor([0.0]), twin.empty_cache(2))  # prefill in one call
        fresh_logits, fresh_cache = twin.step(seq[:, :5], torch.tensor([0.0]), None)  # the graph's spelling
        torch.testing.assert_close(fresh_logits, logits)
        torch.testing.assert_close(fresh_cache[0][0], cache[0][0])
        outputs = [logits]
        for t in range(5, 9):
            logits, cache = twin.step(seq[:, t : t + 1], torch.tensor([float(t)]), cache)
            outputs.append(logits)
    assert torch.max(torch.abs(torch.stack(outputs, 1) - full[:, 4:])) <= 1e-5


def test_named_sizes():
    from edgekit.models.seq2seq import SEQ2SEQ_CONFIGS, parameter_count

    paper = SEQ2SEQ_CONFIGS["330m"]
    assert (paper.encoder_layers, paper.decoder_layers, paper.d_model, paper.ffn_dim) == (20, 10, 1024, 4096)
    assert (paper.heads, paper.kv_heads, paper.head_dim) == (6, 3, 64)
    with torch.device("meta"):  # counted without allocating 1.3 GB
        assert 320e6 < parameter_count(EncoderDecoder(paper)) < 340e6
        assert 25e6 < parameter_count(EncoderDecoder(SEQ2SEQ_CONFIGS["30m"])) < 35e6
