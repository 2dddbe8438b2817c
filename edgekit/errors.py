"""The exceptions edgekit raises.

Every error a user can cause is an :class:`EdgekitError` whose message says what
happened and what to do. The CLI prints that message as one line and exits with
``exit_code`` (2 for bad input; 1 when an export ran but its numbers disagree).
"""

from __future__ import annotations

from collections.abc import Iterable


class EdgekitError(Exception):
    """Base class of the errors a user can act on."""

    exit_code: int = 2


class UnknownNameError(EdgekitError, KeyError):
    """A model, format, target, dataset ... that is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str], suggestions: Iterable[str] = ()):
        self.kind, self.name = kind, name
        self.known = sorted(known)
        self.suggestions = list(suggestions)
        hint = f" Did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Known: {', '.join(self.known) or '(none)'}.")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class MissingDependencyError(EdgekitError, ImportError):
    """An optional package is not installed; the message names the pip extra that brings it."""

    def __init__(self, package: str, extra: str, purpose: str):
        self.package, self.extra = package, extra
        super().__init__(
            f"{purpose} needs the Python package {package!r}, which is not installed: "
            f"pip install 'edgekit-sdk[{extra}]'"
        )


class UnsupportedOptionError(EdgekitError, ValueError):
    """An option value outside the allowed set."""

    def __init__(self, option: str, value: object, allowed: Iterable[object]):
        self.option, self.value, self.allowed = option, value, list(allowed)
        super().__init__(f"{option}={value!r} is not supported; allowed: {', '.join(map(str, self.allowed))}.")


class ConfigError(EdgekitError, ValueError):
    """A model configuration that cannot be built."""


class ExportFailed(EdgekitError):
    """The lowering toolchain failed; the cause is chained."""

    def __init__(self, format: str, stage: str, cause: BaseException | str):
        self.format, self.stage = format, stage
        reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {_first_line(cause)}"
        super().__init__(f"{format} export failed while {stage}: {reason} (run with --debug for the full trace)")


class ValidationFailed(EdgekitError):
    """The exported model's outputs disagree with PyTorch beyond tolerance."""

    exit_code = 1

    def __init__(self, format: str, summary: str, bundle: str | None = None, hint: str = ""):
        self.format, self.summary, self.bundle = format, summary, bundle
        kept = f" The bundle was kept at {bundle} for inspection." if bundle else ""
        super().__init__(
            f"{format} export disagrees with PyTorch: {summary}.{kept} "
            f"{hint}Pass --allow-mismatch to keep it as a bundle anyway."
        )


class ShapeMismatch(EdgekitError):
    """An exported graph's output has another shape than PyTorch's: the graph is wrong, not imprecise.

    Not a ValidationFailed, so ``--allow-mismatch`` (which keeps a bundle whose numbers drift) cannot keep it.
    """

    exit_code = 1

    def __init__(self, output: str, shape: tuple[int, ...], reference: tuple[int, ...]):
        self.output, self.shape, self.reference = output, shape, reference
        super().__init__(
            f"exported output {output!r} has shape {shape}, PyTorch's has {reference}: the exported graph "
            "computes something else (no flag keeps such a bundle; check the model's forward for "
            "export-only branches or shapes taken from Python state)"
        )


class BundleError(EdgekitError):
    """A bundle that is missing, corrupt, truncated, tampered with or of an unknown schema."""


class InputError(EdgekitError, ValueError):
    """Inputs that do not match what the model expects."""


class WorkerError(EdgekitError):
    """A remote worker failed, timed out or is unreachable."""

    def __init__(self, worker: str, what: str):
        self.worker = worker
        super().__init__(f"worker {worker}: {what}")


class UserCodeError(EdgekitError):
    """A user-supplied model factory could not be loaded or returned something unusable."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
