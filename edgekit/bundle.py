"""Read and write bundle directories: model file(s) plus the ``edgekit.json`` manifest.

A bundle is trusted only after its manifest parses, its schema version is known and every
file it lists has the recorded size and sha256. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import BundleError
from edgekit.types import GraphSpec

log = logging.getLogger(__name__)

MANIFEST_NAME = "edgekit.json"
SCHEMA_VERSION = 1
_REQUIRED_KEYS = ("schema_version", "model", "format", "precision", "graphs", "files", "validation")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(bundle_dir: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """The ``files`` section of a manifest: size and sha256 of each named file."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(names)):
        path = bundle_dir / name
        out[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return out


def check_replaceable(destination: Path, marker: str, what: str) -> None:
    """Only ever replace a previous output of ours (a directory holding ``marker``) or an empty directory:
    never delete a user's other files."""
    if destination.is_file():
        raise BundleError(f"{destination} is a file; choose another output directory with -o")
    if destination.is_dir() and any(destination.iterdir()) and not (destination / marker).is_file():
        raise BundleError(f"{destination} exists and is not {what}; refusing to overwrite it (choose another -o)")


def write_manifest(bundle_dir: Path, manifest: dict[str, Any]) -> Path:
    path = bundle_dir / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a manifest
    return path


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: dict[str, Any]

    @property
    def format(self) -> str:
        return str(self.manifest["format"])

    @property
    def model(self) -> str:
        return str(self.manifest["model"]["name"])

    @property
    def graphs(self) -> tuple[GraphSpec, ...]:
        return tuple(GraphSpec.from_json(g) for g in self.manifest["graphs"])

    def graph(self, name: str | None = None) -> GraphSpec:
        graphs = self.graphs
        if name is None:
            return graphs[0]
        for g in graphs:
            if g.name == name:
                return g
        raise BundleError(f"bundle {self.path} has no graph {name!r}; it has {', '.join(g.name for g in graphs)}")

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
    try:
        manifest = json.loads(manifest_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path} is corrupt ({exc}); re-export the bundle") from None
    if not isinstance(manifest, dict) or any(k not in manifest for k in _REQUIRED_KEYS):
        missing = [k for k in _REQUIRED_KEYS if not isinstance(manifest, dict) or k not in manifest]
        raise BundleError(f"{manifest_path} is not an edgekit manifest (missing {', '.join(missing)})")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise BundleError(
            f"{root} has manifest schema {manifest['schema_version']!r}; this edgekit reads schema "
            f"{SCHEMA_VERSION}. Re-export the bundle with this edgekit version."
        )
    bundle = Bundle(root, manifest)
    try:
        graphs = bundle.graphs
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{manifest_path} has a malformed graph entry ({exc!r}); re-export the bundle") from None
    files = manifest["files"]
    for g in graphs:
        if g.file not in files:
            raise BundleError(f"{manifest_path}: graph {g.name!r} names {g.file!r}, which the file list lacks")
    if verify:
        verify_files(root, files)
    return bundle


def inside_bundle(root: str | Path, name: str) -> Path:
    """``root / name`` resolved; BundleError if it leaves the bundle directory (``..``, absolute, symlink)."""
    path = (Path(root) / name).resolve()
    if Path(root).resolve() not in path.parents:
        raise BundleError(f"{root}: manifest lists {name!r}, outside the bundle directory; refusing to read it")
    return path


def verify_files(root: Path, files: dict[str, dict[str, Any]]) -> None:
    for name, entry in files.items():
        path = inside_bundle(root, name)
        if not path.is_file():
            raise BundleError(f"{root}: {name} is missing; copy the whole bundle directory or re-export it")
        size = path.stat().st_size
        if size != entry["bytes"]:
            what = "truncated" if size < entry["bytes"] else "larger than recorded"
            raise BundleError(
                f"{root}: {name} is {what} ({size} bytes, manifest says {entry['bytes']}); "
                "the copy is incomplete or the file was changed, re-copy or re-export the bundle"
            )
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(
                f"{root}: {name} does not match its sha256 in {MANIFEST_NAME} (modified after export); "
                "re-export the bundle or restore the original file"
            )
    log.debug("verified %d file(s) in %s", len(files), root)
