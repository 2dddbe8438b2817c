"""Turn a model with a streaming form into one graph with its state as explicit inputs and outputs.

A model streams when its module has ``stream_step(frames, state) -> predictions`` that reads every piece of
state through ``state.take(...)`` and hands its successor to ``state.put(...)`` (see
:class:`edgekit.models.state.StreamState`). One call from zeros discovers the layout; the wrapper then
gives each state tensor its own graph input and output, in that order, so that every runtime sees plain
tensors (the Stateful Conformer pattern: no hidden state inside the runtime, zeros to start).
"""

from __future__ import annotations

import torch
from torch import nn

from edgekit.errors import ConfigError, UnsupportedOptionError
from edgekit.models.spec import MODELS, ModelSpec
from edgekit.models.state import StreamState
from edgekit.streaming import StreamLayout

FRAMES_INPUT = "frames"
LOGITS_OUTPUT = "logits"
SPIKES_OUTPUT = "spikes"


class _StreamingStep(nn.Module):
    """``forward(frames, state_0, ..., state_n) -> (logits[, spikes], state_0_out, ..., state_n_out)``."""

    def __init__(self, model: nn.Module, slots: int, spiking: bool):
        super().__init__()
        self.model, self.slots, self.spiking = model, slots, spiking

    def step(self, frames: torch.Tensor, states: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        state = StreamState(list(states))
        logits = self.model.stream_step(frames, state)
        spikes = (torch.cat(state.spikes, dim=1),) if self.spiking else ()
        return (logits, *spikes, *state.outputs)


def _with_named_inputs(slots: int) -> type[_StreamingStep]:
    # torch.fx (BatchNorm folding) and torch.export want one named parameter per graph input; *states would
    # reach them as a single opaque argument. So the subclass gets a forward with exactly the right signature.
    params = ", ".join(f"state_{i}" for i in range(slots))
    source = f"def forward(self, frames, {params}):\n    return self.step(frames, ({params}{',' if slots else ''}))\n"
    namespace: dict = {}
    exec(compile(source, "<edgekit streaming step>", "exec"), namespace)  # noqa: S102  (our own template)
    return type(f"StreamingStep{slots}", (_StreamingStep,), {"forward": namespace["forward"]})


def streaming_models() -> list[str]:
    return [name for name, entry in MODELS.items() if entry.streams]


def streaming_spec(spec: ModelSpec, chunk: int = 1) -> tuple[ModelSpec, StreamLayout]:
    """The step graph's ModelSpec (inputs: frames then state; outputs: logits, [spikes,] new state) and its layout."""
    if not callable(getattr(spec.module, "stream_step", None)):
        raise UnsupportedOptionError(f"--streaming for {spec.name}", "streaming", streaming_models())
    if chunk < 1:
        raise ConfigError(f"--chunk must be at least 1 frame, got {chunk}")
    features = int(spec.example_inputs[0].shape[-1])
    frames = torch.randn(1, chunk, features, generator=torch.Generator().manual_seed(0))
    discovery = StreamState()
    with torch.no_grad():
        spec.module.stream_step(frames, discovery)
    slots = tuple(discovery.slots)
    spiking = bool(discovery.spikes)
    module = _with_named_inputs(len(slots))(spec.module, len(slots), spiking).eval()
    layout = StreamLayout(
        frames_input=FRAMES_INPUT,
        chunk=chunk,
        features=features,
        logits_output=LOGITS_OUTPUT,
        spikes_output=SPIKES_OUTPUT if spiking else None,
        state=slots,
        sequence_length=int(spec.example_inputs[0].shape[1]),
    )
    step = ModelSpec(
        name=spec.name,
        family=spec.family,
        module=module,
        example_inputs=(frames, *(torch.zeros(s.shape) for s in slots)),
        input_names=(FRAMES_INPUT, *(s.name for s in slots)),
        output_names=(LOGITS_OUTPUT, *((SPIKES_OUTPUT,) if spiking else ()), *(s.output for s in slots)),
        config={**spec.config, "streaming_chunk": chunk},
        task=spec.task,
        class_names=spec.class_names,
        dataset=spec.dataset,
    )
    return step, layout
