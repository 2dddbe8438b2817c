"""The inputs export verification feeds the encoder-decoder graphs are ones a generation reaches.

Random N(0, 1) floats as a decoder step's ``position`` and ``src_mask`` (and noise as its cache) would check the
graph at inputs no device ever gives it; these tests read the input sets the export pipeline builds.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.exporters.verify import input_sets as _input_sets  # an export's verification inputs
from edgekit.models import create_model
from edgekit.models.encdec_interface import CausalDecoderModel, EncoderDecoderModel
from edgekit.types import ExportOptions
from tests.conftest import TINY_CONFIGS

ENCODER_DECODERS = ["seq2seq_tiny", "t5", "bart"]
OPTIONS = ExportOptions(format="onnx")


def _graphs(model: str):
    spec = create_model(model, **TINY_CONFIGS[model])
    return spec, {g.name: g for g in spec.graphs}


def _assert_valid_prefix_mask(mask: np.ndarray) -> int:
    mask = mask.reshape(-1)
    length = int(mask.sum())
    assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
    assert length >= 1 and (mask[:length] == 1.0).all() and (mask[length:] == 0.0).all()
    return length


def _assert_cache_written_before(cache: np.ndarray, position: int) -> None:
    """(kv_heads, slots, head_dim): every slot before ``position`` holds a key/value, none from it on."""
    per_slot = np.abs(cache).sum(axis=(0, 2))
    assert (per_slot[:position] > 0).all(), per_slot
    assert not per_slot[position:].any(), per_slot


@pytest.mark.parametrize("model", ENCODER_DECODERS)
def test_decoder_step_is_verified_at_integer_positions_over_real_caches(model):
    spec, graphs = _graphs(model)
    layout = spec.extras["seq2seq"]
    slots = layout["max_target"]
    sets = _input_sets(graphs["decoder_step"], OPTIONS)
    assert len(sets) == OPTIONS.validation_samples
    positions = [float(s["position"][0]) for s in sets]
    assert all(p.is_integer() and 0 <= p < slots for p in positions), positions
    assert len(set(positions)) == len(sets) and max(positions) == slots - 1  # spread to the last slot
    for s, position in zip(sets, positions, strict=True):
        _assert_valid_prefix_mask(s["src_mask"])
        assert 0 <= int(s["tokens"][0, 0]) < spec.config["vocab_size"]
        for name in layout["cache"]["inputs"]:
            _assert_cache_written_before(s[name], int(position))
    for s in sets[1:]:  # after the example (the first step: position 0, and zeros of the cross K/V's shape)
        for name in layout["cross"]["names"]:
            assert np.abs(s[name]).sum() > 0  # an encoder output, computed for the set's source


@pytest.mark.parametrize("model", ENCODER_DECODERS)
def test_encoder_is_verified_on_padded_sources_of_every_length(model):
    spec, graphs = _graphs(model)
    sets = _input_sets(graphs["encoder"], OPTIONS)
    lengths = [_assert_valid_prefix_mask(s["src_mask"]) for s in sets]
    assert min(lengths) == 1 and max(lengths) == spec.extras["seq2seq"]["max_source"]
    pad = spec.extras["seq2seq"]["tokenizer"]["pad_id"]
    for s, length in zip(sets, lengths, strict=True):
        assert (s["src"][0, length:] == pad).all()


def test_twin_decoder_step_is_verified_after_its_prompt():
    spec, graphs = _graphs("seq2seq_tiny_twin")
    layout = spec.extras["decoder_only"]
    prompt_len, slots = layout["prompt_len"], layout["prompt_len"] + layout["max_target"]
    samples = _input_sets(graphs["decoder_step"], OPTIONS)[1:]  # after the example (zeros: the layout's shape)
    positions = [float(s["position"][0]) for s in samples]
    assert all(p.is_integer() for p in positions)
    assert min(positions) == prompt_len and max(positions) == slots - 1
    for s, position in zip(samples, positions, strict=True):
        for name in layout["cache"]["inputs"]:
            _assert_cache_written_before(s[name], int(position))  # by the prefill and the tokens since


def test_families_state_the_device_interface():
    for model in ENCODER_DECODERS:
        module = create_model(model, **TINY_CONFIGS[model]).module
        assert isinstance(module, EncoderDecoderModel)
        assert len(module.empty_cache()) == module.self_cache.layers
    twin = create_model("seq2seq_tiny_twin", **TINY_CONFIGS["seq2seq_tiny_twin"]).module
    assert isinstance(twin, CausalDecoderModel) and not isinstance(twin, EncoderDecoderModel)
