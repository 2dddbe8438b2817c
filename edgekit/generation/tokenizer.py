"""The built-in byte-level tokenizer: every UTF-8 byte is a token, plus padding / begin / end markers.

Any text encodes (there are no unknown words); ids outside the vocabulary are refused, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.errors import InputError


@dataclass(frozen=True)
class ByteTokenizer:
    pad_id: int = 256
    bos_id: int = 257
    eos_id: int = 258
    vocab_size: int = 264  # 259 used, rounded up to a multiple of 8

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.bos_id, self.eos_id)

    def encode(self, text: str, max_len: int | None = None, what: str = "text") -> list[int]:
        ids = list(text.encode("utf-8"))
        if max_len is not None and len(ids) > max_len:
            raise InputError(
                f"the {what} is {len(ids)} bytes long; this model takes at most {max_len} "
                f"(shorten it, or export with a larger maximum length)"
            )
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of the byte ids; special ids are dropped, an id beyond the vocabulary is an error."""
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token id {bad[0]} is outside the byte vocabulary (0..{self.vocab_size - 1})")
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def to_json(self) -> dict:
        return {"kind": "bytes", "pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id,
                "vocab_size": self.vocab_size}  # fmt: skip
