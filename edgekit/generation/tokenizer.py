"""Tokenizers a bundle can name: the built-in byte-level one, and a checkpoint's own tokenizer file
(a Hugging Face ``tokenizer.json`` or a SentencePiece model) copied into the bundle.

Every kind records the ids generation needs (``pad_id``, ``bos_id`` = the decoder's start token, ``eos_id``)
and the vocabulary size; ids outside the vocabulary are refused, not guessed. ``TOKENIZER_KINDS`` maps the
manifest's ``kind`` to the class that reads it back.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgekit.bundle import inside_bundle
from edgekit.errors import BundleError, InputError, MissingDependencyError


@dataclass(frozen=True)
class Tokenizer:
    pad_id: int
    bos_id: int  # the decoder's first input
    eos_id: int
    vocab_size: int
    kind: ClassVar[str]

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.bos_id, self.eos_id)

    def _ids(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode(self, text: str, max_len: int | None = None, what: str = "text") -> list[int]:
        ids = self._ids(text)
        if max_len is not None and len(ids) > max_len:
            raise InputError(
                f"the {what} is {len(ids)} tokens long; this model takes at most {max_len} "
                f"(shorten it, or export with a larger maximum length)"
            )
        return ids

    def pad(self, ids: list[int], length: int) -> tuple[np.ndarray, np.ndarray]:
        """(1, length) int32 ids padded at the end, and their float 1 (token) / 0 (padding) mask."""
        if len(ids) > length:
            raise InputError(f"{len(ids)} tokens do not fit {length} positions")
        src = np.full((1, length), self.pad_id, dtype=np.int32)
        mask = np.zeros((1, length), dtype=np.float32)
        src[0, : len(ids)] = ids
        mask[0, : len(ids)] = 1.0
        return src, mask

    def _check(self, ids: list[int]) -> None:
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})")

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``, special ids dropped; an id beyond the vocabulary is an error."""
        self._check(ids)
        return self._text([i for i in ids if i not in self.special_ids])

    def _text(self, ids: list[int]) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class ByteTokenizer(Tokenizer):
    """Every UTF-8 byte is a token (there are no unknown words), plus padding / begin / end markers."""

    pad_id: int = 256
    bos_id: int = 257
    eos_id: int = 258
    vocab_size: int = 264  # 259 used, rounded up to a multiple of 8
    kind: ClassVar[str] = "bytes"

    def _ids(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def _text(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class NoTokenizer(Tokenizer):
    """A checkpoint that came without tokenizer files: the bundle runs, but text cannot be encoded."""

    kind: ClassVar[str] = "none"

    def _ids(self, text: str) -> list[int]:
        raise InputError(
            "this bundle has no tokenizer (its checkpoint folder held no tokenizer.json or spiece.model); "
            "re-export from a folder that has one"
        )

    def _text(self, ids: list[int]) -> str:
        return " ".join(str(i) for i in ids)


@dataclass(frozen=True)
class _FileTokenizer(Tokenizer):
    """A tokenizer read from a file that travels in the bundle (``file``: its name there; ``root``: its folder)."""

    file: str = ""
    root: str = "."

    @property
    def path(self) -> Path:
        return Path(self.root) / self.file

    package: ClassVar[str]  # the library that reads the file (the ``text`` extra)

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data.pop("root")
        return data

    def _open(self, module: Any) -> Any:
        raise NotImplementedError

    @cached_property
    def _impl(self) -> Any:
        try:
            module = importlib.import_module(self.package)
        except ImportError as exc:
            raise MissingDependencyError(self.package, "text", f"the bundle's {self.kind} tokenizer") from exc
        try:
            return self._open(module)
        except Exception as exc:  # each library raises its own exception types for a malformed file
            raise BundleError(f"cannot read tokenizer {self.path}: {str(exc).splitlines()[0][:200]}") from None


@dataclass(frozen=True)
class JsonTokenizer(_FileTokenizer):
    """A Hugging Face ``tokenizer.json`` (the ``tokenizers`` library; its post-processor adds the end token)."""

    kind: ClassVar[str] = "tokenizers-json"
    package: ClassVar[str] = "tokenizers"

    def _open(self, module: Any) -> Any:
        return module.Tokenizer.from_file(str(self.path))

    def _ids(self, text: str) -> list[int]:
        return list(self._impl.encode(text).ids)

    def _text(self, ids: list[int]) -> str:
        return self._impl.decode(ids, skip_special_tokens=True)


@dataclass(frozen=True)
class SentencePieceTokenizer(_FileTokenizer):
    """A SentencePiece model (T5's ``spiece.model``); ``append_eos`` ends every source with the end token, as
    transformers' T5 tokenizer does."""

    append_eos: bool = True
    kind: ClassVar[str] = "sentencepiece"
    package: ClassVar[str] = "sentencepiece"

    def _open(self, module: Any) -> Any:
        processor = module.SentencePieceProcessor()
        processor.Load(str(self.path))
        return processor

    def _ids(self, text: str) -> list[int]:
        ids = list(self._impl.EncodeAsIds(text))
        return [*ids, self.eos_id] if self.append_eos else ids

    def _text(self, ids: list[int]) -> str:
        return self._impl.DecodeIds(ids)


TOKENIZER_KINDS: dict[str, type[Tokenizer]] = {
    cls.kind: cls for cls in (ByteTokenizer, NoTokenizer, JsonTokenizer, SentencePieceTokenizer)
}


def tokenizer_from_json(
    data: dict[str, Any], root: str | Path = ".", hashed: Collection[str] | None = None
) -> Tokenizer:
    """The tokenizer a manifest describes; a file-based one is read from ``root`` (the bundle directory).

    Its file is confined like every bundle file: it must resolve inside ``root`` and, given the names the
    manifest hashes (``hashed``), be one of them, so what is read is what the bundle's hashes verified.
    """
    fields = dict(data)
    kind = fields.pop("kind", None)
    cls = TOKENIZER_KINDS.get(kind)
    if cls is None:
        raise BundleError(f"tokenizer kind {kind!r} is not known here (known: {', '.join(TOKENIZER_KINDS)})")
    if issubclass(cls, _FileTokenizer):
        fields["root"] = str(root)
        name = str(fields.get("file", ""))
        try:
            path = inside_bundle(root, name)
        except BundleError as exc:
            raise BundleError(f"the tokenizer file: {exc}") from None
        if hashed is not None and name not in hashed:
            raise BundleError(f"{root}: the tokenizer file {name!r} is not among the bundle's hashed files; re-export")
        if not path.is_file():
            raise BundleError(f"the tokenizer file {fields.get('file')!r} is missing from {root}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise BundleError(f"the manifest's tokenizer entry is malformed: {exc}") from None
