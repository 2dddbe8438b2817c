"""Encoder + decoder-step bundles in every format: greedy tokens and cached logits equal PyTorch's."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgekit.errors import BundleError, InputError
from edgekit.formats import FORMATS
from edgekit.generation.bundle_runner import BundleSeq2SeqRunner
from edgekit.generation.sampling import Sampling, generate
from edgekit.generation.tasks import TASKS
from edgekit.generation.torch_runner import TorchSeq2SeqRunner
from edgekit.models import prepare_model
from tests.generation.bundles import CONFIG, PAIRS
from tests.helpers.cli import assert_user_error, invoke

FORMAT_NAMES = FORMATS.names()
PROMPTS = [s for s, _ in TASKS.get("reverse").examples(6, seed=99)] + ["", "a"]


@pytest.fixture(scope="module")
def reference(seq2seq):
    return TorchSeq2SeqRunner(prepare_model("seq2seq_tiny", seq2seq.weights()).module)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_greedy_tokens_and_cached_logits_equal_pytorch(seq2seq, reference, fmt):
    result = seq2seq.get(fmt)
    assert result.passed, result.validation.summary()
    manifest = result.manifest.to_json()
    assert [g["name"] for g in manifest["graphs"]] == ["encoder", "decoder_step"]
    layout = manifest["extras"]["seq2seq"]
    assert layout["tokenizer"]["kind"] == "bytes" and layout["max_target"] == CONFIG["max_target"]
    expected_files = {"onnx": {"encoder.onnx", "decoder_step.onnx"}, "pte": {"model.pte"}, "tflite": {"model.tflite"}}
    assert expected_files[fmt] <= set(manifest["files"])
    worst = 0.0
    with BundleSeq2SeqRunner(result.bundle_dir) as runner:
        for prompt in PROMPTS:
            want = generate(reference, prompt, CONFIG["max_target"] - 1)
            got = generate(runner, prompt, CONFIG["max_target"] - 1)
            assert got.tokens == want.tokens, prompt
            # teacher-forced through the cache: feed the reference tokens, compare every step's logits
            reference.start(list(prompt.encode()))
            runner.start(list(prompt.encode()))
            token = runner.tokenizer.bos_id
            for position, next_token in enumerate([*want.tokens, runner.tokenizer.eos_id][:6]):
                worst = max(worst, float(np.abs(reference.step(token, position) - runner.step(token, position)).max()))
                token = next_token
    assert worst <= 1e-4


def test_trained_model_reverses_strings(seq2seq):
    # 10 epochs of 4,000 pairs (one run here: 92% exact match on the 200 held-out strings, the same through every
    # format's bundle); the 30-epoch run is tests/generation/test_seq2seq_training.py (slow)
    assert seq2seq.exact_match() > 0.6
    with BundleSeq2SeqRunner(seq2seq.path("onnx")) as runner:
        pairs = TASKS.get("reverse").split(PAIRS, 200)[1][:40]
        hits = sum(generate(runner, s, 15).text == t for s, t in pairs)
    assert hits >= 24


@pytest.mark.parametrize("fmt", ["pte", "tflite"])
def test_shared_embedding_is_stored_once(seq2seq, fmt):
    # one file with two methods / signatures: the weights both graphs use (the tied embedding) are not repeated
    manifest = seq2seq.get(fmt).manifest.to_json()
    weight_bytes = manifest["model"]["parameters"] * 4
    assert sum(f["bytes"] for f in manifest["files"].values()) < 1.25 * weight_bytes


def test_sampling_through_a_bundle_is_seeded(seq2seq):
    with BundleSeq2SeqRunner(seq2seq.path("tflite")) as runner:
        a = generate(runner, "abc", 8, Sampling(temperature=1.0, top_k=5, seed=3), stop_ids=())
        b = generate(runner, "abc", 8, Sampling(temperature=1.0, top_k=5, seed=3), stop_ids=())
    assert a == b and len(a.tokens) == 8


def test_overflow_and_bad_layout_are_refused(seq2seq, tmp_path):
    with BundleSeq2SeqRunner(seq2seq.path("onnx")) as runner:
        with pytest.raises(InputError, match="1..15 new tokens fit"):
            generate(runner, "abc", 16)
        with pytest.raises(InputError, match="at most 16"):
            generate(runner, "x" * 17, 3)
    bundle = tmp_path / "b"
    shutil.copytree(seq2seq.path("onnx"), bundle)
    manifest_path = bundle / "edgekit.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["extras"]["seq2seq"]["cache"]["shape"][1] += 1  # a cache longer than the decoder's
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="disagree in cache layout"):
        BundleSeq2SeqRunner(bundle)


def test_generate_command(seq2seq, bundles):
    result = invoke("generate", str(seq2seq.path("pte")), "--prompt", "hello", "-n", "5")
    assert result.exit_code == 0, result.output
    assert "first token" in result.stderr and "tokens" in result.stderr
    assert_user_error(invoke("generate", str(seq2seq.path("pte")), "--prompt", "hello", "-n", "40"), "new tokens fit")
    assert_user_error(invoke("generate", str(bundles.path("cnn_small", "onnx")), "--prompt", "x"),
                      "not an encoder-decoder bundle")  # fmt: skip
