"""Compare a runtime's outputs with reference outputs: max abs error, cosine, top-1 agreement.

Numpy only, so a device without torch can re-check a bundle against saved references.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgekit.errors import ShapeMismatch
from edgekit.types import QualityGate, QualityResult, Tolerance, ValidationResult


def compare(
    reference: Sequence[dict[str, np.ndarray]],
    candidate: Sequence[dict[str, np.ndarray]],
    tolerance: Tolerance,
    classify: bool = True,
) -> ValidationResult:
    """Judge ``candidate`` against ``reference`` (one dict of named outputs per input set).

    Top-1 agreement is computed on the last axis of the first output when ``classify`` is set.
    """
    if len(reference) != len(candidate) or not reference:
        raise ValueError("reference and candidate need the same, non-zero number of samples")
    names = list(reference[0])
    per_output = []
    worst_err, worst_allowed, min_cos, passed = 0.0, 0.0, 1.0, True
    for name in names:
        ref, got = _stacked(reference, candidate, name)
        err = float(np.max(np.abs(ref - got))) if ref.size else 0.0
        allowed = tolerance.atol + tolerance.rtol * float(np.max(np.abs(ref))) if ref.size else tolerance.atol
        cos = cosine(ref, got)
        ok = bool(np.isfinite(got).all()) and err <= allowed and cos >= tolerance.min_cosine
        passed &= ok
        if err - allowed > worst_err - worst_allowed or not per_output:
            worst_err, worst_allowed = err, allowed
        min_cos = min(min_cos, cos)
        per_output.append({"name": name, "max_abs_err": err, "allowed_abs_err": allowed, "cosine": cos, "passed": ok})
    top1 = None
    if classify and names:
        top1 = top1_agreement([r[names[0]] for r in reference], [c[names[0]] for c in candidate])
    return ValidationResult(
        passed=passed,
        max_abs_err=worst_err,
        allowed_abs_err=worst_allowed,
        cosine=min_cos,
        top1_agreement=top1,
        samples=len(reference),
        tolerance=tolerance,
        per_output=tuple(per_output),
    )


def _stacked(
    reference: Sequence[dict[str, np.ndarray]], candidate: Sequence[dict[str, np.ndarray]], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Output ``name`` of every sample, both sides as float64; ShapeMismatch (never a score) if they differ."""
    refs = [np.asarray(r[name], dtype=np.float64) for r in reference]
    gots = [np.asarray(c[name], dtype=np.float64) for c in candidate]
    for ref, got in zip(refs, gots, strict=True):
        if ref.shape != got.shape:
            raise ShapeMismatch(name, tuple(got.shape), tuple(ref.shape))
    return np.stack(refs), np.stack(gots)


def merge_results(results: Sequence[tuple[str, ValidationResult]]) -> ValidationResult:
    """One verdict for several graphs: all must pass; the worst error and cosine; outputs named graph/output."""
    worst_name, worst = max(results, key=lambda r: r[1].max_abs_err - r[1].allowed_abs_err)
    per_output = tuple({**o, "name": f"{name}/{o['name']}"} for name, r in results for o in r.per_output)
    return ValidationResult(
        passed=all(r.passed for _, r in results),
        max_abs_err=worst.max_abs_err,
        allowed_abs_err=worst.allowed_abs_err,
        cosine=min(r.cosine for _, r in results),
        top1_agreement=None,
        samples=min(r.samples for _, r in results),
        tolerance=worst.tolerance,
        per_output=per_output,
    )


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities in float64 (max subtracted first, so large logits do not overflow)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    if denom == 0.0:
        return 1.0 if float(np.abs(a - b).max(initial=0.0)) == 0.0 else 0.0
    return float(np.dot(a, b) / denom)


def top1_agreement(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> float:
    ref = np.concatenate([np.asarray(r).reshape(-1, np.asarray(r).shape[-1]) for r in reference])
    got = np.concatenate([np.asarray(c).reshape(-1, np.asarray(c).shape[-1]) for c in candidate])
    return float(np.mean(ref.argmax(-1) == got.argmax(-1)))


def judge_quantized(
    reference: Sequence[dict[str, np.ndarray]],
    candidate: Sequence[dict[str, np.ndarray]],
    gate: QualityGate,
    precision: str,
    data: str,
    labels: np.ndarray | None = None,
    classify: bool = True,
) -> QualityResult:
    """Judge a quantized model on task quality: held-out accuracy when ``labels`` are given, else top-1
    agreement with the float reference or, failing that, the logits' cosine similarity (classifiers), else
    cosine similarity alone.

    Max abs error and cosine are recorded too but, for INT8, decide nothing when labels or classes exist.
    """
    if len(reference) != len(candidate) or not reference:
        raise ValueError("reference and candidate need the same, non-zero number of samples")
    ref, got = _stacked(reference, candidate, next(iter(reference[0])))
    finite = bool(np.isfinite(got).all())
    cos = cosine(ref, got) if finite else 0.0
    err = float(np.max(np.abs(ref - got))) if finite else float("inf")
    top1 = accuracy = reference_accuracy = None
    if classify:
        ref_top1 = ref.reshape(-1, ref.shape[-1]).argmax(-1)
        got_top1 = got.reshape(-1, got.shape[-1]).argmax(-1)
        top1 = float(np.mean(ref_top1 == got_top1))
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            reference_accuracy = float(np.mean(ref_top1 == labels))
            accuracy = float(np.mean(got_top1 == labels))
    if accuracy is not None and reference_accuracy is not None:
        criterion = "accuracy"
        passed = 100.0 * (reference_accuracy - accuracy) <= gate.max_accuracy_drop + 1e-9
    elif top1 is not None:
        # An untrained model's logits are near-tied, so its top-1 flips on rounding noise alone; logits that
        # point the same way (cosine) show the same function just as well.
        criterion = "top1_agreement" if top1 >= gate.min_top1_agreement or cos < gate.min_cosine else "cosine"
        passed = top1 >= gate.min_top1_agreement or cos >= gate.min_cosine
    else:
        criterion, passed = "cosine", cos >= gate.min_cosine
    return QualityResult(
        passed=bool(passed and finite), precision=precision, criterion=criterion, data=data,
        samples=len(reference), top1_agreement=top1, accuracy=accuracy, reference_accuracy=reference_accuracy,
        cosine=cos, max_abs_err=err, gate=gate,
    )  # fmt: skip


@dataclass(frozen=True)
class SpikeAgreement:
    """How a bundle's spike trains (neurons, T) compare with PyTorch's for one sequence.

    Spikes must agree exactly, except that a neuron whose membrane potential sits within ``margin`` of the
    threshold may fire in PyTorch and not in a runtime, or the reverse (float rounding). Such a flip changes
    everything after it, so only the first disagreement is judged -- the earliest step, and within it the
    earliest neuron in call order, whose inputs still agreed -- and the sequence is compared up to that step.
    """

    compared_steps: int  # steps before the first disagreement (all of them when none)
    flipped: int  # spikes that differ at that first step (0: the trains agree)
    near_threshold: bool  # whether the first differing neuron was within the margin of the threshold
    margin: float
    neurons: int  # spike trains compared

    @property
    def explained(self) -> bool:
        return self.flipped == 0 or self.near_threshold


def compare_spikes(reference: np.ndarray, candidate: np.ndarray, potentials: np.ndarray, threshold: float,
                   margin: float) -> SpikeAgreement:  # fmt: skip
    """Spike trains (neurons in call order, T) of PyTorch and a runtime, with PyTorch's pre-reset potentials."""
    if reference.shape != candidate.shape:
        raise ValueError(f"spike trains differ in shape: {candidate.shape} vs reference {reference.shape}")
    differs = reference != candidate
    if not differs.any():
        return SpikeAgreement(reference.shape[-1], 0, False, margin, reference.shape[0])
    step = int(np.argmax(differs.any(axis=0)))
    neuron = int(np.argmax(differs[:, step]))
    near = bool(abs(float(potentials[neuron, step]) - threshold) <= margin)
    return SpikeAgreement(step, int(differs[:, step].sum()), near, margin, reference.shape[0])
