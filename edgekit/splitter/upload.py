"""Receiving a bundle upload (a stream of ``DeployChunk``) into a staging directory, within bounds.

An upload is refused as soon as it exceeds its byte, file-count or path-depth bound, repeats an empty chunk
(a flood of empty chunks costs the worker a thread and nothing for the sender), or names a path outside the
staging directory. The staging directory is removed whenever the upload does not end accepted -- a refused,
cancelled or broken stream leaves nothing -- and leftovers of a killed worker are removed when it starts.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import InputError

STAGING_PREFIX = ".staging-"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 512 * 1024 * 1024
    max_files: int = 64
    max_depth: int = 4


@dataclass(frozen=True)
class Upload:
    shard: str
    digest: str
    path: Path  # the staging directory holding the files
    bytes: int
    files: int


def remove_leftovers(workdir: Path) -> int:
    """Staging directories a killed worker left behind; returns how many were removed."""
    leftovers = [p for p in workdir.glob(f"{STAGING_PREFIX}*") if p.is_dir()]
    for p in leftovers:
        shutil.rmtree(p, ignore_errors=True)
    return len(leftovers)


@contextmanager
def staging_dir(workdir: Path) -> Iterator[Path]:
    """A fresh staging directory, removed on the way out unless it was moved into place meanwhile."""
    path = workdir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def receive(chunks: Iterable, staging: Path, limits: UploadLimits) -> Upload:
    """Write every chunk under ``staging``; InputError at the first one beyond the limits."""
    shard = digest = None
    total = 0
    seen: set[str] = set()
    for chunk in chunks:
        if shard is None:
            shard, digest = chunk.shard, chunk.digest
            if not _NAME.fullmatch(shard) or not _DIGEST.fullmatch(digest):
                raise InputError("deploy needs a shard name [A-Za-z0-9_.-] and a sha256 hex digest")
        elif (chunk.shard, chunk.digest) != (shard, digest):
            raise InputError("every chunk of one upload must name the same shard and digest")
        parts = chunk.path.split("/")
        if not all(_PATH_PART.fullmatch(p) for p in parts):
            raise InputError(f"refusing upload path {chunk.path!r} (relative names only, no '..')")
        if len(parts) > limits.max_depth:
            raise InputError(f"upload path {chunk.path!r} is deeper than {limits.max_depth} directories")
        if chunk.path not in seen:
            seen.add(chunk.path)
            if len(seen) > limits.max_files:
                raise InputError(f"an upload may hold at most {limits.max_files} files")
        elif not chunk.data:
            # Only the first chunk of a file (an empty file) may be empty; more of them is a flood.
            raise InputError(f"repeated empty chunk for {chunk.path!r}")
        total += len(chunk.data)
        if total > limits.max_bytes:
            raise InputError(f"bundle larger than this worker's limit of {limits.max_bytes} bytes")
        target = staging.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("ab") as fh:
            fh.write(chunk.data)
    if shard is None:
        raise InputError("empty upload")
    return Upload(shard, digest, staging, total, len(seen))
