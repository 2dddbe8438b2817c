"""The manifest (``edgekit.json``) as a type: the contract between the torch side and the device side.

Exporters fill its parts (model, export, transforms, quantization, validation, extras); runtimes, workers,
profiling and serving read them as attributes. The JSON layout is schema 1, the one every earlier edgekit
wrote (new fields are optional), so bundles exported before the manifest became a type still load.
Numpy-free: it parses on a device that has only a runtime.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, replace
from typing import Any

from edgekit.errors import BundleError
from edgekit.layouts import Extras
from edgekit.types import GraphSpec, QualityResult, QuantizationScheme, ValidationResult

SCHEMA_VERSION = 1
_REQUIRED_KEYS = ("schema_version", "model", "format", "precision", "graphs", "files", "validation")


@dataclass(frozen=True)
class FileEntry:
    """Size and sha256 of one file of the bundle, checked before a runtime reads it."""

    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    parameters: int
    flops: int | None = None  # one forward pass of the whole model; per graph in GraphSpec.flops
    task: str = "classification"
    config: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None
    dataset: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "parameters": self.parameters, "flops": self.flops,
                "task": self.task, "config": self.config,
                "class_names": list(self.class_names) if self.class_names else None,
                "dataset": self.dataset}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        names = data.get("class_names")
        return cls(str(data["name"]), str(data.get("family") or ""), int(data.get("parameters") or 0),
                   data.get("flops"), str(data.get("task") or "classification"), dict(data.get("config") or {}),
                   tuple(map(str, names)) if names else None, data.get("dataset"))  # fmt: skip


@dataclass(frozen=True)
class ExportInfo:
    seconds: float
    # op name -> count of ops left outside the delegate; None where the format has no delegate notion
    undelegated_ops: dict[str, int] | None = None

    @property
    def undelegated_op_count(self) -> int | None:
        return None if self.undelegated_ops is None else sum(self.undelegated_ops.values())

    def to_json(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "undelegated_ops": self.undelegated_ops,
                "undelegated_op_count": self.undelegated_op_count}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportInfo:
        ops = data.get("undelegated_ops")
        return cls(
            float(data.get("seconds") or 0.0), {str(k): int(v) for k, v in ops.items()} if ops is not None else None
        )


@dataclass(frozen=True)
class FoldSummary:
    """What BatchNorm / RepBN folding did before lowering (``skipped`` says why it did not run)."""

    folded: dict[str, int] = field(default_factory=dict)  # pattern ("conv+bn", ...) -> count
    traced: bool = True
    reason: str = ""
    norms_left: int = 0
    skipped: str | None = None

    @property
    def total(self) -> int:
        return sum(self.folded.values())

    def to_json(self) -> dict[str, Any]:
        if self.skipped is not None:
            fold: dict[str, Any] = {"skipped": self.skipped}
        else:
            fold = {"folded": dict(self.folded), "total": self.total, "traced": self.traced, "reason": self.reason}
        return {"fold_norms": fold, "norms_left": self.norms_left}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FoldSummary:
        fold = data.get("fold_norms") or {}
        return cls({str(k): int(v) for k, v in (fold.get("folded") or {}).items()}, bool(fold.get("traced", True)),
                   str(fold.get("reason") or ""), int(data.get("norms_left") or 0), fold.get("skipped"))  # fmt: skip


@dataclass(frozen=True)
class QuantizationInfo:
    """How an INT8 bundle was quantized and on what (``calibration`` is None for weight-only INT8)."""

    precision: str
    scheme: QuantizationScheme
    calibration_source: str | None = None
    calibration_samples: int | None = None

    def to_json(self) -> dict[str, Any]:
        calibration = (None if self.calibration_source is None else
                       {"source": self.calibration_source, "samples": self.calibration_samples})  # fmt: skip
        return {"precision": self.precision, **self.scheme.to_json(), "calibration": calibration}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuantizationInfo:
        rest = {k: v for k, v in data.items() if k not in ("precision", "calibration")}
        calibration = data.get("calibration") or {}
        return cls(str(data["precision"]), QuantizationScheme.from_json(rest), calibration.get("source"),
                   calibration.get("samples"))  # fmt: skip


Validation = ValidationResult | QualityResult


def validation_from_json(data: dict[str, Any]) -> Validation | None:
    """None for a staged bundle still being verified; a QualityResult when a quality gate judged it."""
    if data.get("pending"):
        return None
    return QualityResult.from_json(data) if "criterion" in data else ValidationResult.from_json(data)


@dataclass(frozen=True)
class DeviceVerification:
    """The same verification, run by a worker on the device itself (``edgekit export --verify-on``)."""

    device: str
    address: str
    machine: str  # the worker's CPU architecture, e.g. aarch64
    worker_version: str
    validation: Validation

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "address": self.address, "machine": self.machine,
                "worker_version": self.worker_version, "validation": self.validation.to_json()}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceVerification:
        validation = validation_from_json(data["validation"])
        if validation is None:
            raise ValueError("a device verification is never pending")
        return cls(str(data["device"]), str(data["address"]), str(data.get("machine") or ""),
                   str(data.get("worker_version") or ""), validation)  # fmt: skip


@dataclass(frozen=True)
class Manifest:
    """Everything a device needs to know about a bundle before it runs it, and how it was verified."""

    model: ModelInfo
    format: str
    precision: str
    graphs: tuple[GraphSpec, ...]
    files: dict[str, FileEntry]
    export: ExportInfo
    validation: Validation | None = None  # None until verification has run (a staged bundle)
    # the same check on real devices, beside the host's (`--verify-on`); every one passed or the export failed
    verified_on: tuple[DeviceVerification, ...] = ()
    target: str | None = None
    delegate: str | None = None
    transforms: FoldSummary | None = None
    quantization: QuantizationInfo | None = None
    extras: Extras = field(default_factory=Extras)
    toolchain: dict[str, str] = field(default_factory=dict)
    edgekit_version: str = ""
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION

    @property
    def passed(self) -> bool:
        return self.validation is not None and self.validation.passed

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files.values())

    def graph(self, name: str | None = None, where: str | None = None) -> GraphSpec:
        """The named graph (the first without a name); ``where`` names the bundle in the error."""
        if name is None:
            return self.graphs[0]
        for g in self.graphs:
            if g.name == name:
                return g
        names = ", ".join(g.name for g in self.graphs)
        raise BundleError(f"{where or self.model.name} has no graph {name!r}; it has {names}")

    def with_validation(self, validation: Validation, seconds: float) -> Manifest:
        return replace(self, validation=validation, export=replace(self.export, seconds=seconds))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "edgekit_version": self.edgekit_version,
            "created": self.created,
            "model": self.model.to_json(),
            "format": self.format,
            "target": self.target,
            "delegate": self.delegate,
            "precision": self.precision,
            "graphs": [g.to_json() for g in self.graphs],
            "files": {name: entry.to_json() for name, entry in sorted(self.files.items())},
            "validation": self.validation.to_json()
            if self.validation is not None
            else {"passed": False, "pending": True},
            "export": self.export.to_json(),
            "toolchain": dict(self.toolchain),
            "extras": self.extras.to_json(),
        }
        if self.transforms is not None:
            out["transforms"] = self.transforms.to_json()
        if self.quantization is not None:
            out["quantization"] = self.quantization.to_json()
        if self.verified_on:
            out["verified_on"] = [v.to_json() for v in self.verified_on]
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "manifest") -> Manifest:
        """Parse and check a manifest; anything malformed is one BundleError naming ``where``."""
        if not isinstance(data, dict) or any(k not in data for k in _REQUIRED_KEYS):
            missing = [k for k in _REQUIRED_KEYS if not isinstance(data, dict) or k not in data]
            raise BundleError(f"{where} is not an edgekit manifest (missing {', '.join(missing)})")
        if data["schema_version"] != SCHEMA_VERSION:
            raise BundleError(
                f"{where} has manifest schema {data['schema_version']!r}; this edgekit reads schema "
                f"{SCHEMA_VERSION}. Re-export the bundle with this edgekit version."
            )
        try:
            manifest = cls(
                model=ModelInfo.from_json(data["model"]),
                format=str(data["format"]),
                precision=str(data["precision"]),
                graphs=tuple(GraphSpec.from_json(g) for g in data["graphs"]),
                files={str(n): FileEntry(int(e["bytes"]), str(e["sha256"])) for n, e in data["files"].items()},
                export=ExportInfo.from_json(data.get("export") or {}),
                validation=validation_from_json(data["validation"]),
                verified_on=tuple(DeviceVerification.from_json(v) for v in data.get("verified_on") or ()),
                target=data.get("target"),
                delegate=data.get("delegate"),
                transforms=FoldSummary.from_json(data["transforms"]) if data.get("transforms") else None,
                quantization=QuantizationInfo.from_json(data["quantization"]) if data.get("quantization") else None,
                extras=Extras.from_json(data.get("extras") or {}),
                toolchain={str(k): str(v) for k, v in (data.get("toolchain") or {}).items()},
                edgekit_version=str(data.get("edgekit_version") or ""),
                created=str(data.get("created") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(f"{where} has a malformed entry ({exc!r}); re-export the bundle") from None
        if not manifest.graphs:
            raise BundleError(f"{where} lists no graphs; re-export the bundle")
        for g in manifest.graphs:
            if g.file not in manifest.files:
                raise BundleError(f"{where}: graph {g.name!r} names {g.file!r}, which the file list lacks")
        return manifest
