"""The contract every exporter meets, and helpers they share."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Protocol

from edgekit._native import captured_output
from edgekit.errors import EdgekitError, ExportFailed, MissingDependencyError
from edgekit.models.spec import ModelSpec
from edgekit.types import ExportOptions, LoweredGraph

log = logging.getLogger(__name__)


class Exporter(Protocol):
    format: ClassVar[str]
    # pip extra that brings the exporter's toolchain
    extra: ClassVar[str]

    def check_environment(self) -> None:
        """Raise MissingDependencyError when the toolchain is not importable."""

    def export(self, spec: ModelSpec, out_dir: Path, options: ExportOptions) -> LoweredGraph:
        """Lower ``spec`` into ``out_dir`` and describe what was written."""


def check_format_environment(format_name: str, extra: str) -> None:
    """Every toolchain module the format's row in the FORMATS table names must import."""
    from edgekit.formats import get_format

    fmt = get_format(format_name)
    # The toolchains print start-up banners straight to fd 2 on first import (TensorFlow's absl and oneDNN
    # lines under litert-torch): captured here, they reach the debug log instead of a normal run's terminal.
    with captured_output(f"importing the {format_name} toolchain"):
        for module, package in fmt.export_requires:
            require(module, package, extra, fmt.purpose)


def require(module: str, package: str, extra: str, purpose: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package, extra, purpose) from None


@contextlib.contextmanager
def stage(format: str, what: str) -> Iterator[None]:
    """Run one lowering stage quietly; a failure becomes ExportFailed(format, stage) with the cause chained."""
    log.info("%s: %s", format, what)
    try:
        with captured_output(what):
            yield
    except EdgekitError:
        raise
    except Exception as exc:
        raise ExportFailed(format, what, exc) from exc
