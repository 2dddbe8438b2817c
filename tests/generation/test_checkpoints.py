"""Bring your own checkpoint: T5 / BART folders from transformers, loaded by name, compared on logits with
transformers itself, exported through the encoder + decoder-step graphs, and generated from with the
checkpoint's own tokenizer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from edgekit.bundle import read_bundle
from edgekit.errors import BundleError, InputError
from edgekit.generation.bundle_runner import BundleSeq2SeqRunner
from edgekit.generation.sampling import generate
from edgekit.generation.tokenizer import JsonTokenizer, SentencePieceTokenizer, tokenizer_from_json
from edgekit.generation.torch_runner import TorchSeq2SeqRunner
from edgekit.models import resolve_model
from edgekit.models.t5 import T5Config, bucket_table, relative_buckets
from tests.generation.checkpoints import hf_model
from tests.helpers.cli import assert_user_error, invoke

PROMPTS = ["the red cat sat on the mat", "one two three", "", "blue dog zebra"]  # "zebra": an unknown word


def _hf_logits(hf, src: torch.Tensor, mask: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hf(input_ids=src, attention_mask=mask.long(), decoder_input_ids=tgt).logits


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(("buckets", "distance"), [(32, 128), (16, 40)])
def test_relative_buckets_equal_transformers(bidirectional, buckets, distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    relative = torch.arange(-300, 301)
    want = T5Attention._relative_position_bucket(relative, bidirectional, buckets, distance)
    assert torch.equal(relative_buckets(relative, bidirectional, buckets, distance), want)


@pytest.mark.parametrize("kind", ["t5", "t5-v1.1", "bart"])
def test_logits_equal_transformers(checkpoints, kind):
    """Teacher-forced logits and the cached decoder's step-by-step logits against transformers' forward, on a
    padded source long enough to reach T5's logarithmic position buckets."""
    spec = resolve_model(str(checkpoints.folder(kind, tokenizer=None)))
    model, hf = spec.module, hf_model(kind)
    torch.manual_seed(1)
    src, tgt = torch.randint(4, 290, (2, 32)), torch.randint(4, 290, (2, 12))
    mask = torch.ones(2, 32)
    mask[1, 19:] = 0.0
    want = _hf_logits(hf, src, mask, tgt)
    with torch.no_grad():
        assert float((model(src, mask, tgt) - want).abs().max()) <= 1e-4
        cross, cache = model.cross_kv(model.encode(src, mask)), model.empty_cache(2)
        for i in range(tgt.shape[1]):
            logits, cache = model.decode_step(tgt[:, i : i + 1], torch.tensor([float(i)]), cache, cross, mask)
            assert float((logits - want[:, i]).abs().max()) <= 1e-4, i
    # T5 v1.0 ties the head to the embedding and scales the decoder output by d_model**-0.5 (the scaling
    # transformers' exportable module skips, docs/toolchain.md): the comparison above would fail 8x without it
    if kind.startswith("t5"):
        assert model.cfg.scale_decoder_outputs == (kind == "t5")


def test_folder_config_is_read():
    hf = hf_model("t5-v1.1").config.to_dict()
    cfg = T5Config(**T5Config.from_hf(hf))
    assert cfg.is_gated_act and cfg.dense_act_fn == "gelu_new" and not cfg.scale_decoder_outputs
    assert cfg.decoder_start_token_id == 0 and cfg.eos_token_id == 1
    # a config saved before transformers 5 says "not tied" (a separate LM head) and has no scaling key
    old = {k: v for k, v in hf.items() if k not in ("scale_decoder_outputs", "dense_act_fn", "is_gated_act")}
    cfg = T5Config(**T5Config.from_hf({**old, "tie_word_embeddings": False}))
    assert not cfg.tie_word_embeddings and not cfg.scale_decoder_outputs and cfg.dense_act_fn == "gelu_new"
    assert bucket_table(3, 3, True, cfg).tolist() == [[0, 17, 18], [1, 0, 17], [2, 1, 0]]


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "pte"])
def test_t5_bundle_generates_as_transformers(checkpoints, fmt):
    result = checkpoints.bundle("t5", fmt)
    assert result.passed, result.validation.summary()
    manifest = result.manifest.to_json()
    tokenizer = manifest["extras"]["seq2seq"]["tokenizer"]
    assert tokenizer["kind"] == "tokenizers-json" and "tokenizer.json" in manifest["files"]
    assert manifest["extras"]["checkpoint"]["model_type"] == "t5"
    if fmt == "pte":  # token ids and position-bucket ids are the only lookups; everything else on XNNPACK
        assert set(manifest["export"]["undelegated_ops"]) == {"aten.embedding"}
    folder = checkpoints.folder("t5")
    hf = hf_model("t5")
    reference = TorchSeq2SeqRunner(resolve_model(str(folder)).module, JsonTokenizer(0, 0, 1, 300, "tokenizer.json",
                                                                                    str(folder)))  # fmt: skip
    worst = 0.0
    with BundleSeq2SeqRunner(result.bundle_dir) as runner:
        for prompt in PROMPTS:
            got = generate(runner, prompt, 12)
            assert got.tokens == generate(reference, prompt, 12).tokens, prompt
            ids = runner.tokenizer.encode(prompt)
            with torch.no_grad():
                hf_out = hf.generate(
                    input_ids=torch.tensor([ids]),
                    max_new_tokens=12,
                    do_sample=False,
                    num_beams=1,
                    decoder_start_token_id=0,
                )
            assert list(got.tokens) == [t for t in hf_out[0, 1:].tolist() if t != 1][: len(got.tokens)], prompt
            # every step's logits against transformers' teacher-forced forward on the generated tokens
            tgt = torch.tensor([[0, *got.tokens]])
            want = _hf_logits(hf, torch.tensor([ids]), torch.ones(1, len(ids)), tgt)[0].numpy()
            runner.start(ids)
            for position, token in enumerate(tgt[0].tolist()):
                worst = max(worst, float(np.abs(runner.step(token, position) - want[position]).max()))
    assert worst <= 1e-4


@pytest.mark.parametrize(
    "fmt", ["onnx", pytest.param("tflite", marks=pytest.mark.slow), pytest.param("pte", marks=pytest.mark.slow)]
)
def test_bart_bundle_logits_equal_transformers(checkpoints, fmt):
    result = checkpoints.bundle("bart", fmt)
    assert result.passed, result.validation.summary()
    hf = hf_model("bart")
    with BundleSeq2SeqRunner(result.bundle_dir) as runner:
        assert runner.tokenizer.bos_id == 2 and runner.tokenizer.pad_id == 1  # BART starts from </s>
        ids = runner.tokenizer.encode("the red cat")
        assert ids[-1] == 2
        got = generate(runner, "the red cat", 10, stop_ids=())
        tgt = torch.tensor([[2, *got.tokens]])
        want = _hf_logits(hf, torch.tensor([ids]), torch.ones(1, len(ids)), tgt)[0].numpy()
        runner.start(ids)
        worst = max(float(np.abs(runner.step(t, p) - want[p]).max()) for p, t in enumerate(tgt[0].tolist()))
    assert worst <= 1e-4


def test_sentencepiece_checkpoint_generates_from_the_cli(checkpoints):
    bundle = checkpoints.path("t5-v1.1", "onnx", tokenizer="sentencepiece")
    manifest = read_bundle(bundle).manifest.to_json()
    assert manifest["extras"]["seq2seq"]["tokenizer"]["kind"] == "sentencepiece"
    tok = tokenizer_from_json(manifest["extras"]["seq2seq"]["tokenizer"], bundle)
    assert isinstance(tok, SentencePieceTokenizer)
    ids = tok.encode("the red cat sat")
    assert ids[-1] == 1 and len(ids) > 2 and tok.decode(ids) == "the red cat sat"
    reference = TorchSeq2SeqRunner(resolve_model(str(checkpoints.folder("t5-v1.1", "sentencepiece"))).module, tok)
    want = generate(reference, "the red cat sat", 8)
    result = invoke("generate", str(bundle), "--prompt", "the red cat sat", "-n", "8")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == want.text.strip()


def test_tokenizer_file_is_checked(checkpoints, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(checkpoints.path("t5", "onnx"), bundle)
    data = json.loads((bundle / "tokenizer.json").read_text())
    data["model"]["vocab"]["cat"] = 5  # a different tokenizer than the one verified
    (bundle / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="tokenizer.json"):
        read_bundle(bundle)
    assert_user_error(invoke("generate", str(bundle), "--prompt", "the cat"), "tokenizer.json")


@pytest.mark.parametrize("where", ["parent", "absolute", "unhashed"])
def test_a_manifest_cannot_point_its_tokenizer_outside_the_bundle(checkpoints, tmp_path, where):
    bundle = tmp_path / "b"
    shutil.copytree(checkpoints.path("t5", "onnx"), bundle)
    # A working tokenizer file the bundle does not vouch for: outside it, or inside but not hashed.
    stray = bundle / "stray.json" if where == "unhashed" else tmp_path / "elsewhere" / "tokenizer.json"
    stray.parent.mkdir(exist_ok=True)
    shutil.copy(bundle / "tokenizer.json", stray)
    name = {"parent": "../elsewhere/tokenizer.json", "absolute": str(stray), "unhashed": "stray.json"}[where]
    manifest = json.loads((bundle / "edgekit.json").read_text())
    manifest["extras"]["seq2seq"]["tokenizer"]["file"] = name
    (bundle / "edgekit.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="tokenizer"):
        BundleSeq2SeqRunner(bundle)
    assert_user_error(invoke("generate", str(bundle), "--prompt", "the cat"), "tokenizer")


def test_checkpoint_errors_are_one_line(checkpoints, tmp_path):
    no_tokenizer = checkpoints.path("t5", "onnx", tokenizer=None)
    assert_user_error(invoke("generate", str(no_tokenizer), "--prompt", "x"), "no tokenizer")
    with BundleSeq2SeqRunner(no_tokenizer) as runner, pytest.raises(InputError, match="no tokenizer"):
        generate(runner, "x", 3)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(checkpoints.folder("t5") / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    assert_user_error(invoke("export", str(pickled), "--format", "onnx"), "safetensors")

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert_user_error(invoke("export", str(other), "--format", "onnx"), "llama", "t5")

    broken = tmp_path / "broken"
    shutil.copytree(checkpoints.folder("t5"), broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    assert_user_error(invoke("export", str(broken), "--format", "onnx"), "model.safetensors")

    # a folder's weights of the wrong shape name the key
    config = json.loads((broken / "config.json").read_text())
    shutil.copy(checkpoints.folder("t5") / "model.safetensors", broken)
    (broken / "config.json").write_text(json.dumps({**config, "d_ff": 96}))
    assert_user_error(invoke("export", str(broken), "--format", "onnx"), "DenseReluDense")
