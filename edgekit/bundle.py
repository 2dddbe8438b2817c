"""Read and write bundle directories: model file(s) plus the ``edgekit.json`` manifest.

A bundle is trusted only after its manifest parses, its schema version is known and every
file it lists has the recorded size and sha256. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import BundleError
from edgekit.jsonio import read_json, write_json
from edgekit.manifest import SCHEMA_VERSION, FileEntry, Manifest
from edgekit.types import GraphSpec

log = logging.getLogger(__name__)

MANIFEST_NAME = "edgekit.json"
__all__ = ["MANIFEST_NAME", "SCHEMA_VERSION", "Bundle", "Manifest", "read_bundle", "write_manifest"]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(bundle_dir: Path, names: list[str]) -> dict[str, FileEntry]:
    """The ``files`` part of a manifest: size and sha256 of each named file."""
    return {
        name: FileEntry((bundle_dir / name).stat().st_size, sha256_file(bundle_dir / name))
        for name in sorted(set(names))
    }


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    return write_json(bundle_dir / MANIFEST_NAME, manifest.to_json())


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: Manifest

    @property
    def format(self) -> str:
        return self.manifest.format

    @property
    def model(self) -> str:
        return self.manifest.model.name

    @property
    def graphs(self) -> tuple[GraphSpec, ...]:
        return self.manifest.graphs

    def graph(self, name: str | None = None) -> GraphSpec:
        return self.manifest.graph(name, where=f"bundle {self.path}")

    def file(self, name: str) -> Path:
        return self.path / name


def read_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle directory and check its manifest and, unless ``verify=False``, every file's hash."""
    root = Path(path)
    if not root.exists():
        raise BundleError(f"no bundle at {root}: the path does not exist")
    if not root.is_dir():
        raise BundleError(f"{root} is a file, not a bundle directory (a bundle holds model files and {MANIFEST_NAME})")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{root} is not a bundle: {MANIFEST_NAME} is missing; re-export with `edgekit export`")
    data = read_json(manifest_path, "manifest", "re-export the bundle")
    manifest = Manifest.from_json(data, str(manifest_path))
    if verify:
        verify_files(root, manifest.files)
    return Bundle(root, manifest)


def inside_bundle(root: str | Path, name: str) -> Path:
    """``root / name`` resolved; BundleError if it leaves the bundle directory (``..``, absolute, symlink)."""
    path = (Path(root) / name).resolve()
    if Path(root).resolve() not in path.parents:
        raise BundleError(f"{root}: manifest lists {name!r}, outside the bundle directory; refusing to read it")
    return path


def verify_files(root: Path, files: dict[str, FileEntry]) -> None:
    for name, entry in files.items():
        path = inside_bundle(root, name)
        if not path.is_file():
            raise BundleError(f"{root}: {name} is missing; copy the whole bundle directory or re-export it")
        size = path.stat().st_size
        if size != entry.bytes:
            what = "truncated" if size < entry.bytes else "larger than recorded"
            raise BundleError(
                f"{root}: {name} is {what} ({size} bytes, manifest says {entry.bytes}); "
                "the copy is incomplete or the file was changed, re-copy or re-export the bundle"
            )
        if sha256_file(path) != entry.sha256:
            raise BundleError(
                f"{root}: {name} does not match its sha256 in {MANIFEST_NAME} (modified after export); "
                "re-export the bundle or restore the original file"
            )
    log.debug("verified %d file(s) in %s", len(files), root)
