"""Generation from an exported encoder-decoder bundle: the encoder graph once per request, then the
decoder-step graph a token at a time with the KV cache carried between calls (numpy only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit import runtimes
from edgekit.bundle import Bundle, read_bundle
from edgekit.errors import BundleError
from edgekit.generation.tokenizer import tokenizer_from_json
from edgekit.layouts import Seq2SeqLayout


class BundleSeq2SeqRunner:
    def __init__(self, bundle: str | Path | Bundle, threads: int | None = None):
        self.bundle = bundle if isinstance(bundle, Bundle) else read_bundle(bundle)
        layout = self.bundle.manifest.extras.seq2seq
        if layout is None:
            raise BundleError(
                f"{self.bundle.path} is not an encoder-decoder bundle (no extras.seq2seq in its manifest)"
            )
        self.layout: Seq2SeqLayout = layout
        self.tokenizer = tokenizer_from_json(layout.tokenizer, self.bundle.path, self.bundle.manifest.files)
        self.max_source, self.max_target = layout.max_source, layout.max_target
        self.encoder = runtimes.load(self.bundle, "encoder", threads=threads)
        self.decoder = runtimes.load(self.bundle, "decoder_step", threads=threads)
        self._check_layout()

    def _check_layout(self) -> None:
        """The graphs must agree with the manifest and with each other on every cache tensor's name and shape."""
        cache, cross = self.layout.cache, self.layout.cross_names
        shape = cache.shape
        dec_in = {s.name: s.shape for s in self.decoder.input_specs}
        dec_out = {s.name: s.shape for s in self.decoder.output_specs}
        enc_out = {s.name: s.shape for s in self.encoder.output_specs}
        problems = [f"decoder input {n} is {list(dec_in.get(n, ()))}, the cache layout says {list(shape)}"
                    for n in cache.inputs if dec_in.get(n) != shape]  # fmt: skip
        problems += [f"decoder output {n} is {list(dec_out.get(n, ()))}, the cache layout says {list(shape)}"
                     for n in cache.outputs if dec_out.get(n) != shape]  # fmt: skip
        problems += [f"cross K/V {n}: encoder gives {list(enc_out.get(n, ()))}, decoder takes {list(dec_in.get(n, ()))}"
                     for n in cross if n not in enc_out or enc_out[n] != dec_in.get(n)]  # fmt: skip
        if problems:
            raise BundleError(f"{self.bundle.path}: the graphs disagree in cache layout: {problems[0]}; re-export it")

    def start(self, source: list[int]) -> None:
        src, self._mask = self.tokenizer.pad(source, self.max_source)
        self._cross = self.encoder.run({"src": src, "src_mask": self._mask})
        self._cache = {n: np.zeros(self.layout.cache.shape, dtype=np.float32) for n in self.layout.cache.inputs}

    def step(self, token: int, position: int) -> np.ndarray:
        feed: dict[str, Any] = {
            "tokens": np.array([[token]], dtype=np.int32),
            "position": np.array([position], dtype=np.float32),
            "src_mask": self._mask,
            **self._cache,
            **self._cross,
        }
        out = self.decoder.run(feed)
        cache = self.layout.cache
        self._cache = {n: out[o] for n, o in zip(cache.inputs, cache.outputs, strict=True)}
        return out["logits"][0]

    def close(self) -> None:
        self.encoder.close()
        self.decoder.close()

    def __enter__(self) -> BundleSeq2SeqRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
