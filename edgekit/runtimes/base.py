"""One interface over every runtime: named numpy inputs in, named numpy outputs out.

Inputs are checked against the graph's specs (names, shapes, dtypes) before they reach native
code, so a mistake is one clear ``InputError`` instead of a crash inside a C++ runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgekit._native import captured_output
from edgekit.bundle import Bundle
from edgekit.errors import BundleError, EdgekitError, InputError
from edgekit.types import GraphSpec, TensorSpec

if TYPE_CHECKING:
    from edgekit.runtimes.budget import BudgetChoice

log = logging.getLogger(__name__)

Inputs = Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray


class Runtime:
    """Base class: subclasses implement ``_open`` and ``_run_native``.

    ``load()`` in :mod:`edgekit.runtimes` picks the subclass from the bundle's format.
    """

    name: ClassVar[str] = "runtime"
    # the package that executes the model, where a format has several (LiteRT: ai_edge_litert or tflite_runtime)
    backend: str = ""
    # top-level packages the runtime needs, for a check that imports nothing; "a|b" means either will do
    native_packages: ClassVar[tuple[str, ...]] = ()
    # set by load(..., budget_ms=...): which graph of a token-merging bundle was chosen, and the timings
    budget: BudgetChoice | None = None

    def __init__(self, model_file: Path, graph: GraphSpec | None, threads: int | None = None):
        self.model_file = Path(model_file)
        self.threads = threads
        try:
            with captured_output(f"loading {self.model_file.name}"):  # native loaders print banners
                self._open(graph)
        except EdgekitError:
            raise
        except Exception as exc:  # a native loader failing on a corrupt file
            raise BundleError(
                f"{self.name} could not load {self.model_file.name}: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else 'no detail'}; "
                "the file is corrupt or was written by an incompatible toolchain, re-export it"
            ) from exc
        if graph is None:
            graph = self._introspect()
        self.graph = graph

    @classmethod
    def installed(cls) -> bool:
        """Whether the native packages are present, without importing them (torch alone takes seconds)."""
        from importlib.util import find_spec

        return all(any(find_spec(name) for name in group.split("|")) for group in cls.native_packages)

    # -- what subclasses provide -------------------------------------------------------------
    @classmethod
    def import_native(cls) -> None:
        """Import the native library (once per process); MissingDependencyError names the extra."""

    def _open(self, graph: GraphSpec | None) -> None:
        raise NotImplementedError

    def _introspect(self) -> GraphSpec:
        """Specs read from the model file itself, for files loaded outside a bundle."""
        raise NotImplementedError

    def _run_native(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    # Why a runtime cannot time single operators, for the error when it is asked to.
    no_operator_times: ClassVar[str] = "this runtime has no per-operator timing"

    @classmethod
    def operator_times(
        cls, model_file: Path, graph: GraphSpec, inputs: dict[str, np.ndarray], runs: int, threads: int | None
    ) -> dict[tuple[str, str], list[float]]:
        """Milliseconds of every operator event over ``runs`` runs, keyed by (op, where it ran)."""
        from edgekit.errors import UnsupportedOptionError

        raise UnsupportedOptionError("--ops", cls.name, [f"a runtime with operator timing ({cls.no_operator_times})"])

    # -- the interface -------------------------------------------------------------------------
    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        return self.graph.inputs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self.graph.outputs

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        arrays = check_inputs(self.input_specs, inputs)
        outputs = self._run_native(arrays)
        if len(outputs) != len(self.output_specs):
            raise BundleError(
                f"{self.model_file.name} returned {len(outputs)} outputs, "
                f"the manifest declares {len(self.output_specs)}"
            )
        return {spec.name: np.asarray(out) for spec, out in zip(self.output_specs, outputs, strict=False)}

    def close(self) -> None:
        """Release native resources (subclasses with any override this)."""

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(s.describe() for s in self.input_specs)
        return f"<{type(self).__name__} {self.model_file.name} ({ins})>"


def check_inputs(specs: Sequence[TensorSpec], inputs: Inputs) -> list[np.ndarray]:
    """Inputs in spec order, each checked for name, shape and dtype."""
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    if isinstance(inputs, Mapping):
        unknown = sorted(set(inputs) - {s.name for s in specs})
        missing = [s.name for s in specs if s.name not in inputs]
        if unknown or missing:
            expected = ", ".join(s.describe() for s in specs)
            problem = f"unknown input(s) {unknown}" if unknown else f"missing input(s) {missing}"
            raise InputError(f"{problem}; the model expects {expected}")
        given = [inputs[s.name] for s in specs]
    else:
        given = list(inputs)
        if len(given) != len(specs):
            expected = ", ".join(s.describe() for s in specs)
            raise InputError(f"got {len(given)} input(s), the model expects {len(specs)}: {expected}")
    arrays = []
    for spec, value in zip(specs, given, strict=False):
        if not isinstance(value, np.ndarray):
            raise InputError(f"input {spec.name!r}: expected a numpy array, got {type(value).__name__}")
        if tuple(value.shape) != spec.shape:
            raise InputError(
                f"input {spec.name!r}: expected shape {list(spec.shape)}, got {list(value.shape)} "
                "(the graph was exported with static shapes)"
            )
        if value.dtype != spec.numpy_dtype:
            raise InputError(
                f"input {spec.name!r}: expected dtype {spec.dtype}, got {value.dtype} "
                f"(convert with .astype(np.{spec.dtype}))"
            )
        arrays.append(np.ascontiguousarray(value))
    return arrays


def bundle_graph(bundle: Bundle, graph: str | None) -> tuple[Path, GraphSpec]:
    spec = bundle.graph(graph)
    return bundle.file(spec.file), spec
