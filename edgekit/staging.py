"""Build an output directory beside its destination and move it into place only when it is finished.

Exports and split plans take minutes and can fail or be interrupted half way; the destination then still
holds the previous, complete output (or nothing), never a mixture.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType

from edgekit.errors import BundleError


def check_replaceable(destination: Path, marker: str, what: str) -> None:
    """Only ever replace a previous output of ours (a directory holding ``marker``) or an empty directory:
    never delete a user's other files."""
    if destination.is_file():
        raise BundleError(f"{destination} is a file; choose another output directory with -o")
    if destination.is_dir() and any(destination.iterdir()) and not (destination / marker).is_file():
        raise BundleError(f"{destination} exists and is not {what}; refusing to overwrite it (choose another -o)")


class StagedDirectory:
    """``with StagedDirectory(dest, marker, what) as stage:`` write into ``stage.path``, then ``stage.commit()``
    (or ``stage.commit_to(other)``). Leaving the block without a commit removes the staging directory."""

    def __init__(self, destination: str | Path, marker: str, what: str):
        self.destination = Path(destination)
        check_replaceable(self.destination, marker, what)
        self.path = self.destination.with_name(f".{self.destination.name}.partial-{os.getpid()}")
        self._done = False

    def __enter__(self) -> StagedDirectory:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        return self

    def commit_to(self, target: Path) -> Path:
        """Move the finished directory to ``target``, replacing what was there."""
        if target.exists():
            shutil.rmtree(target)
        self.path.rename(target)
        self._done = True
        return target

    def commit(self) -> Path:
        return self.commit_to(self.destination)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self._done:
            shutil.rmtree(self.path, ignore_errors=True)
