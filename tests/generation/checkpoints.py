"""Hugging Face checkpoint folders built on the spot: random T5 / BART weights saved by transformers as
safetensors, with a tokenizer.json (the ``tokenizers`` library) or a spiece.model (SentencePiece) beside them."""

from __future__ import annotations

import io
from pathlib import Path

import torch

WORDS = "the a one two three four five six seven eight nine ten red green blue cat dog sat ran on under".split()
CORPUS = [
    "the red cat sat on the mat",
    "a green dog ran under the blue table",
    "one two three four five six seven eight nine ten",
    "edge devices run small language models",
    "the encoder reads the source once and the decoder writes a token at a time",
] * 20

T5_SIZES = dict(vocab_size=300, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4)
BART_SIZES = dict(
    vocab_size=300, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=64,
)  # fmt: skip


def hf_model(kind: str, seed: int = 0):
    """A random transformers model: ``t5`` (v1.0: ReLU, tied embedding, output scaling), ``t5-v1.1`` (gated GELU,
    separate LM head) or ``bart``."""
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    if kind == "t5":
        model = T5ForConditionalGeneration(T5Config(**T5_SIZES))
    elif kind == "t5-v1.1":
        model = T5ForConditionalGeneration(
            T5Config(**T5_SIZES, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
        )
    else:
        model = BartForConditionalGeneration(BartConfig(**BART_SIZES))
    return model.eval()


def word_tokenizer_json(path: Path, special: dict[str, int], eos: str) -> None:
    """A word-level tokenizer.json whose post-processor ends every text with ``eos``, as T5's does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = dict(special)
    for word in WORDS:
        vocab[word] = len(vocab) + 3
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, special[eos])])
    tokenizer.add_special_tokens(list(special))
    tokenizer.save(str(path))


def sentencepiece_model(path: Path) -> None:
    """A small unigram SentencePiece model with T5's special ids (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece

    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buffer, vocab_size=60, pad_id=0, eos_id=1, unk_id=2,
        bos_id=-1, model_type="unigram", hard_vocab_limit=False, minloglevel=2,
    )  # fmt: skip
    path.write_bytes(buffer.getvalue())


def make_folder(root: Path, kind: str, tokenizer: str | None) -> Path:
    """Save ``hf_model(kind)`` to ``root`` with a ``tokenizer`` of kind json / sentencepiece / None."""
    hf_model(kind).save_pretrained(root)
    if tokenizer == "json" and kind.startswith("t5"):
        word_tokenizer_json(root / "tokenizer.json", {"<pad>": 0, "</s>": 1, "<unk>": 2}, "</s>")
    elif tokenizer == "json":
        word_tokenizer_json(root / "tokenizer.json", {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}, "</s>")
    elif tokenizer == "sentencepiece":
        sentencepiece_model(root / "spiece.model")
    return root


class CheckpointBundles:
    """Folders and their bundles, each made on first use and shared for the session."""

    def __init__(self, root: Path):
        self.root = root
        self._folders: dict[tuple[str, str | None], Path] = {}
        self._bundles: dict[tuple[str, str | None, str], object] = {}

    def folder(self, kind: str, tokenizer: str | None = "json") -> Path:
        key = (kind, tokenizer)
        if key not in self._folders:
            self._folders[key] = make_folder(self.root / f"{kind}-{tokenizer}", kind, tokenizer)
        return self._folders[key]

    def bundle(self, kind: str, fmt: str, tokenizer: str | None = "json"):
        key = (kind, tokenizer, fmt)
        if key not in self._bundles:
            from edgekit.exporters.pipeline import export

            self._bundles[key] = export(str(self.folder(kind, tokenizer)), format=fmt, samples=4,
                                        out_dir=self.root / f"{kind}-{tokenizer}-{fmt}")  # fmt: skip
        return self._bundles[key]

    def path(self, kind: str, fmt: str, tokenizer: str | None = "json") -> Path:
        return Path(self.bundle(kind, fmt, tokenizer).bundle_dir)
