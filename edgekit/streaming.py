"""Run a streaming bundle one frame (or chunk) at a time: ``StreamSession(bundle).push(frame)``.

A streaming graph takes the new frames plus every piece of state (LMU memories, conv ring buffers, LIF
membrane potentials, the running sum of the head's outputs) and returns the prediction so far plus the
new state. The manifest's ``extras.stream`` records that layout; the session keeps the state between
calls, starting from zeros. Numpy only: this runs where torch is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit import runtimes
from edgekit.bundle import Bundle, read_bundle
from edgekit.errors import BundleError, InputError
from edgekit.layouts import StreamLayout


class StreamSession:
    """Feed frames to a streaming bundle and read the running prediction after each one.

    >>> with StreamSession("lmuformer_spiking-pte-stream") as stream:
    ...     for frame in sequence:             # (features,) each
    ...         logits = stream.push(frame)    # (chunk, classes): the prediction after each new frame
    """

    def __init__(self, bundle: str | Path | Bundle, threads: int | None = None):
        self.bundle = bundle if isinstance(bundle, Bundle) else read_bundle(bundle)
        layout = self.bundle.manifest.extras.stream
        if layout is None:
            raise BundleError(
                f"{self.bundle.path} is not a streaming bundle (no extras.stream in its manifest); "
                "export it with `edgekit export MODEL --streaming`"
            )
        self.layout: StreamLayout = layout
        self.runtime = runtimes.load(self.bundle, threads=threads)
        _check_layout(self.layout, self.runtime, self.bundle.path)
        self.reset()

    def reset(self) -> None:
        """Back to the initial state (all zeros): the next frame starts a new sequence."""
        self._state = {s.name: np.zeros(s.shape, dtype=np.float32) for s in self.layout.state}
        self.frames_seen = 0
        self.last_spikes: np.ndarray | None = None

    def push(self, frames: np.ndarray) -> np.ndarray:
        """Advance by one chunk: ``frames`` shaped (features,), (chunk, features) or (1, chunk, features).

        Returns the prediction after each of the chunk's frames, (chunk, classes).
        """
        chunk, features = self.layout.chunk, self.layout.features
        array = np.asarray(frames)
        if array.size != chunk * features or array.ndim > 3:
            raise InputError(
                f"a push takes {chunk} frame(s) of {features} value(s) ({chunk * features} numbers), got shape "
                f"{list(array.shape)}"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise InputError(f"frames must be floating point, got {array.dtype}")
        inputs = {self.layout.frames_input: array.astype(np.float32).reshape(1, chunk, features), **self._state}
        outputs = self.runtime.run(inputs)
        self._state = {s.name: outputs[s.output] for s in self.layout.state}
        self.frames_seen += chunk
        if self.layout.spikes_output:
            self.last_spikes = outputs[self.layout.spikes_output][0]
        return outputs[self.layout.logits_output][0]

    def as_sequence(self, sequence: np.ndarray) -> np.ndarray:
        """``sequence`` as (frames, features) with frames a multiple of the chunk, or one InputError saying why not."""
        sequence = np.asarray(sequence)
        if sequence.ndim == 3 and sequence.shape[0] == 1:
            sequence = sequence[0]
        if sequence.ndim != 2 or sequence.shape[1] != self.layout.features:
            raise InputError(f"a sequence is (frames, {self.layout.features}); got shape {list(sequence.shape)}")
        if len(sequence) % self.layout.chunk:
            raise InputError(
                f"{len(sequence)} frames do not split into chunks of {self.layout.chunk}; pad or trim the sequence"
            )
        return sequence

    def run(self, sequence: np.ndarray) -> np.ndarray:
        """Push a whole (T, features) sequence chunk by chunk from the current state: (T, classes)."""
        return self.run_recording(sequence)[0]

    def run_recording(self, sequence: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """As :meth:`run`, plus every neuron's spikes (neurons, T) for a spiking model (None otherwise)."""
        sequence, chunk = self.as_sequence(sequence), self.layout.chunk
        predictions, spikes = [], []
        for start in range(0, len(sequence), chunk):
            predictions.append(self.push(sequence[start : start + chunk]))
            if self.last_spikes is not None:
                spikes.append(self.last_spikes)
        return np.concatenate(predictions), (np.concatenate(spikes, axis=-1) if spikes else None)

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_layout(layout: StreamLayout, runtime: runtimes.Runtime, where: Path) -> None:
    """The manifest's state layout must be exactly the graph's extra inputs and outputs."""
    inputs = {s.name: s for s in runtime.input_specs}
    outputs = {s.name: s for s in runtime.output_specs}
    expected_inputs = {layout.frames_input, *(s.name for s in layout.state)}
    problems = []
    if set(inputs) != expected_inputs:
        problems.append(f"graph inputs {sorted(inputs)} != layout {sorted(expected_inputs)}")
    for slot in layout.state:
        for name, table in ((slot.name, inputs), (slot.output, outputs)):
            if name in table and table[name].shape != slot.shape:
                problems.append(f"{name} is {list(table[name].shape)} in the graph, {list(slot.shape)} in the layout")
            elif name not in table and table is outputs:
                problems.append(f"the graph has no output {name}")
    frames = inputs.get(layout.frames_input)
    if frames is not None and frames.shape != (1, layout.chunk, layout.features):
        problems.append(f"{layout.frames_input} is {list(frames.shape)}, layout says chunk {layout.chunk}")
    if problems:
        raise BundleError(f"{where}: the stream state layout and the graph disagree: {problems[0]}; re-export it")
