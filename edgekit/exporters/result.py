"""What ``edgekit.export()`` returns: where the bundle is, its Manifest, and a way to run it at once."""

from __future__ import annotations

from dataclasses import dataclass

from edgekit import runtimes
from edgekit.manifest import Manifest, Validation


@dataclass(frozen=True)
class ExportResult:
    """A finished export: where the bundle is and how it compared with PyTorch."""

    bundle_dir: str
    manifest: Manifest
    seconds: float

    @property
    def validation(self) -> Validation | None:
        """How the bundle compared with PyTorch (never None: export() returns only verified bundles)."""
        return self.manifest.validation

    @property
    def passed(self) -> bool:
        return self.manifest.passed

    def load(self, graph: str | None = None, threads: int | None = None) -> runtimes.Runtime:
        """The bundle opened with its runtime (hashes checked again), ready to ``run``."""
        return runtimes.load(self.bundle_dir, graph=graph, threads=threads)
