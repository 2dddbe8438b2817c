"""Values passed between the stages of edgekit: frozen dataclasses, no torch needed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgekit.cpu import CpuFeatures

# dtypes a bundle may declare for a tensor; names follow numpy.
DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")


@dataclass(frozen=True)
class TensorSpec:
    """Name, static shape and dtype of one graph input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(name=str(data["name"]), shape=tuple(data["shape"]), dtype=str(data["dtype"]))

    def describe(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class GraphSpec:
    """One executable graph of a bundle (most bundles have exactly one, named ``forward``)."""

    name: str
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # The runtime's own name for the graph (ExecuTorch method, TFLite signature key), when it has one.
    entry: str | None = None
    # Floating-point operations of one call (a multiply-add counts 2), counted at export; None if unknown.
    flops: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "file": self.file,
            "entry": self.entry,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }
        if self.flops is not None:
            out["flops"] = self.flops
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GraphSpec:
        return cls(
            name=str(data["name"]),
            file=str(data["file"]),
            entry=data.get("entry"),
            inputs=tuple(TensorSpec.from_json(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_json(t) for t in data["outputs"]),
            flops=int(data["flops"]) if data.get("flops") is not None else None,
        )


@dataclass(frozen=True)
class Tolerance:
    """What "agrees with PyTorch" means for one export.

    An output passes when ``max_abs_err <= atol + rtol * max|reference|`` and the cosine
    similarity of the flattened outputs is at least ``min_cosine``.
    """

    atol: float = 1e-4
    rtol: float = 1e-3
    min_cosine: float = 0.9999

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tolerance:
        return cls(float(data["atol"]), float(data["rtol"]), float(data["min_cosine"]))


@dataclass(frozen=True)
class ValidationResult:
    """How an exported model's outputs compare with PyTorch's on the same inputs."""

    passed: bool
    max_abs_err: float
    allowed_abs_err: float
    cosine: float
    top1_agreement: float | None
    samples: int
    tolerance: Tolerance
    per_output: tuple[dict[str, Any], ...] = ()

    def summary(self) -> str:
        top1 = "n/a" if self.top1_agreement is None else f"{self.top1_agreement:.1%}"
        return (
            f"max abs error {self.max_abs_err:.3g} (allowed {self.allowed_abs_err:.3g}), "
            f"cosine {self.cosine:.6f} (min {self.tolerance.min_cosine}), top-1 agreement {top1} "
            f"over {self.samples} inputs"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "max_abs_err": self.max_abs_err,
            "allowed_abs_err": self.allowed_abs_err,
            "cosine": self.cosine,
            "top1_agreement": self.top1_agreement,
            "samples": self.samples,
            "tolerance": self.tolerance.to_json(),
            "per_output": list(self.per_output),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ValidationResult:
        top1 = data.get("top1_agreement")
        return cls(bool(data["passed"]), float(data["max_abs_err"]), float(data["allowed_abs_err"]),
                   float(data["cosine"]), None if top1 is None else float(top1), int(data["samples"]),
                   Tolerance.from_json(data["tolerance"]), tuple(data.get("per_output") or ()))  # fmt: skip


# Numeric precisions an export can ask for: float, static INT8 (calibrated activations), and weight-only INT8
# with activations quantized on the fly (dynamic).
PRECISIONS = ("fp32", "int8", "int8-dynamic")


@dataclass(frozen=True)
class QualityGate:
    """What "still good" means for a quantized export, judged on task quality rather than max abs error.

    With labelled held-out data the INT8 accuracy may fall at most ``max_accuracy_drop`` points below the
    FP32 model's; without labels, top-1 agreement with the FP32 model must reach ``min_top1_agreement`` or
    the outputs' cosine similarity ``min_cosine`` (an untrained classifier's near-tied logits flip top-1 on
    rounding noise alone).
    """

    max_accuracy_drop: float = 2.0
    min_top1_agreement: float = 0.9
    min_cosine: float = 0.99

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QualityGate:
        return cls(float(data["max_accuracy_drop"]), float(data["min_top1_agreement"]), float(data["min_cosine"]))


@dataclass(frozen=True)
class QualityResult:
    """How a quantized bundle compares with the FP32 PyTorch model on real (or, failing that, random) inputs."""

    passed: bool
    precision: str
    criterion: str  # "accuracy", "top1_agreement" or "cosine": what decided ``passed``
    data: str  # what the comparison ran on
    samples: int
    top1_agreement: float | None
    accuracy: float | None
    reference_accuracy: float | None
    cosine: float
    max_abs_err: float
    gate: QualityGate

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy is None or self.reference_accuracy is None:
            return None
        return round(100.0 * (self.reference_accuracy - self.accuracy), 4)

    def summary(self) -> str:
        parts = []
        if self.accuracy is not None and self.reference_accuracy is not None:
            parts.append(
                f"accuracy {self.accuracy:.2%} vs FP32 {self.reference_accuracy:.2%} "
                f"({-self.accuracy_drop:+.2f} pts, max drop {self.gate.max_accuracy_drop:g})"
            )
        if self.top1_agreement is not None:
            parts.append(f"top-1 agreement {self.top1_agreement:.1%}")
        parts.append(f"cosine {self.cosine:.4f}")
        return f"{self.precision}: {', '.join(parts)} over {self.samples} {self.data} inputs"

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "precision": self.precision,
            "criterion": self.criterion,
            "data": self.data,
            "samples": self.samples,
            "top1_agreement": self.top1_agreement,
            "accuracy": self.accuracy,
            "reference_accuracy": self.reference_accuracy,
            "accuracy_drop_points": self.accuracy_drop,
            "cosine": self.cosine,
            "max_abs_err": self.max_abs_err,
            "gate": self.gate.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QualityResult:
        opt = lambda key: None if data.get(key) is None else float(data[key])  # noqa: E731
        return cls(bool(data["passed"]), str(data["precision"]), str(data["criterion"]), str(data["data"]),
                   int(data["samples"]), opt("top1_agreement"), opt("accuracy"), opt("reference_accuracy"),
                   float(data["cosine"]), float(data["max_abs_err"]), QualityGate.from_json(data["gate"]))  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    """Input sets for the quantizer's observers, and where they came from (``edgekit.calibration`` reads them)."""

    samples: tuple[dict[str, np.ndarray], ...]
    source: str

    def __len__(self) -> int:
        return len(self.samples)

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "samples": len(self.samples)}


@dataclass(frozen=True)
class QuantizationScheme:
    """How an exporter quantized a graph: the tool, the weights' and activations' scheme in words, the
    tool-specific settings (``details``: the recipe's settings, counts of nodes kept in float ...), the
    INT8 recipe's name and the CPU it was chosen for (``edgekit.exporters.int8_recipes``)."""

    tool: str
    weights: str
    activations: str
    details: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    cpu: CpuFeatures | None = None
    # False when activations are quantized per call: the manifest then records no calibration data
    calibrated: bool = True

    def to_json(self) -> dict[str, Any]:
        chosen = {"recipe": self.recipe, "cpu": self.cpu.to_json() if self.cpu else None} if self.recipe else {}
        return {"tool": self.tool, "weights": self.weights, "activations": self.activations, **self.details,
                **chosen}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuantizationScheme:
        # bundles from before the recipe table kept the ONNX settings under "recipe" (a dict, not a name)
        recipe = data.get("recipe") if isinstance(data.get("recipe"), str) else None
        cpu = CpuFeatures.from_json(data["cpu"]) if recipe and data.get("cpu") else None
        named = ("tool", "weights", "activations") + (("recipe", "cpu") if recipe else ())
        details = {k: v for k, v in data.items() if k not in named}
        return cls(str(data["tool"]), str(data["weights"]), str(data["activations"]), details, recipe, cpu)


@dataclass(frozen=True)
class ExportOptions:
    """What the user asked of one export, after the target preset is resolved."""

    format: str
    target: str | None = None
    delegate: str | None = None
    precision: str = "fp32"
    allow_mismatch: bool = False
    validation_samples: int = 8
    tolerance: Tolerance = field(default_factory=Tolerance)
    seed: int = 0
    # INT8 only: the observers' inputs (static) and the bar the quantized bundle must clear.
    calibration: Calibration | None = None
    quality: QualityGate = field(default_factory=QualityGate)
    # INT8 only: the CPU the bundle will run on (the target's, else this machine's) and a recipe name that
    # overrides the table's choice for it (edgekit.exporters.int8_recipes)
    cpu: CpuFeatures | None = None
    int8_recipe: str | None = None

    @property
    def quantized(self) -> bool:
        return self.precision != "fp32"


@dataclass(frozen=True)
class LoweredGraph:
    """What an exporter wrote, before validation: one graph, or several sharing a file (methods, signatures)."""

    graphs: tuple[GraphSpec, ...]
    # Files the graph needs, relative to the bundle directory (a .onnx may bring a .onnx.data).
    files: tuple[str, ...]
    # Ops that run outside the delegate (op name -> count); None when the format has no delegate notion.
    undelegated_ops: dict[str, int] | None = None
    # How an INT8 graph was quantized; None for float exports.
    quantization: QuantizationScheme | None = None


def jsonable(value: Any) -> Any:
    """Config values as JSON-safe primitives (tuples become lists, numpy scalars Python numbers)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value
