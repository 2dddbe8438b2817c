"""Verify a streaming bundle: stream whole sequences through it, frame by frame from the zero state, and
compare the prediction after every frame with the whole-sequence PyTorch model's (``forward_steps``).

For spiking models the bundle also returns every LIF neuron's spikes; they must equal PyTorch's exactly,
except for a first flip of a neuron within tolerance of its threshold (see ``validate.compare_spikes``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from edgekit.inputs import make_inputs
from edgekit.models.spec import ModelSpec
from edgekit.models.spiking import LIF, recording
from edgekit.streaming import StreamSession
from edgekit.types import ExportOptions, ValidationResult
from edgekit.validate import SpikeAgreement, compare, compare_spikes


def reference_steps(whole: ModelSpec, sequence: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """PyTorch's prediction after each frame (T, classes) and, spiking, its spikes and potentials (neurons, T)."""
    with torch.no_grad(), recording(whole.module) as record:
        steps = whole.module.forward_steps(torch.from_numpy(sequence))[0].numpy()
    if not record.spikes:
        return steps, None, None
    spikes, potentials = record.stacked()
    return steps, spikes[0].numpy(), potentials[0].numpy()


def stream_sequence(session: StreamSession, sequence: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The bundle's prediction after each frame (T, classes) and its spikes (neurons, T) from the zero state."""
    session.reset()
    return session.run_recording(sequence)


def stream_agreement(
    whole: ModelSpec, session: StreamSession, sequence: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray, SpikeAgreement | None]:
    """PyTorch's and the bundle's per-frame predictions for one (1, T, F) sequence, cut at a spike flip, and
    (spiking models) how the spike trains compare."""
    want, want_spikes, potentials = reference_steps(whole, sequence)
    got, got_spikes = stream_sequence(session, sequence)
    if want_spikes is None or got_spikes is None:
        return want, got, None
    agreement = compare_spikes(want_spikes, got_spikes, potentials, lif_threshold(whole.module), margin)
    return want[: agreement.compared_steps], got[: agreement.compared_steps], agreement


def validate_stream(whole: ModelSpec, bundle_dir: Path, options: ExportOptions) -> ValidationResult:
    sequences = [whole.example_inputs[0].numpy()]
    sequences += [s[whole.input_names[0]] for s in make_inputs(whole.input_specs, options.validation_samples - 1,
                                                                 seed=options.seed)]  # fmt: skip
    reference, candidate, agreements = [], [], []
    with StreamSession(bundle_dir) as session:
        for sequence in sequences:
            want, got, agreement = stream_agreement(whole, session, sequence, options.tolerance.atol)
            if agreement is not None:
                agreements.append(agreement)
            # one sample per frame: the predictions of every step are judged, up to a spike flip
            reference += [{"logits": row} for row in want]
            candidate += [{"logits": row} for row in got]
    spike_check = _spike_summary(agreements, sequences[0].shape[1]) if agreements else None
    if not reference:  # every sequence flipped at its first frame: no prediction was compared, so nothing passes
        return ValidationResult(False, float("nan"), options.tolerance.atol, float("nan"), None, len(sequences),
                                options.tolerance, (spike_check,) if spike_check else ())  # fmt: skip
    result = compare(reference, candidate, options.tolerance, classify=whole.task == "classification")
    result = replace(result, samples=len(sequences))
    if spike_check is None:
        return result
    return replace(result, passed=result.passed and spike_check["passed"],
                   per_output=(*result.per_output, spike_check))  # fmt: skip


def _spike_summary(agreements: list[SpikeAgreement], steps: int) -> dict:
    return {
        "name": "spikes",
        "passed": all(a.explained for a in agreements),
        "sequences": len(agreements),
        "sequences_identical": sum(a.flipped == 0 for a in agreements),
        "near_threshold_flips": sum(a.flipped > 0 and a.near_threshold for a in agreements),
        "unexplained_flips": sum(not a.explained for a in agreements),
        "frames_compared": sum(a.compared_steps for a in agreements),
        "frames": steps * len(agreements),
        "margin": agreements[0].margin,
    }


def lif_threshold(module: torch.nn.Module) -> float:
    thresholds = {m.threshold for m in module.modules() if isinstance(m, LIF)}
    if len(thresholds) > 1:
        raise ValueError(f"LIF neurons with different thresholds {sorted(thresholds)}: compare them one by one")
    return thresholds.pop() if thresholds else 1.0
