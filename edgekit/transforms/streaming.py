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
from edgekit.layouts import StreamLayout
from edgekit.models.spec import MODELS, ModelSpec, with_named_inputs
from edgekit.models.state import StreamState

FRAMES_INPUT = "frames"
LOGITS_OUTPUT = "logits"
SPIKES_OUTPUT = "spikes"


class _StreamingStep(nn.Module):
    """``forward(frames, state_0, ..., state_n) -> (logits[, spikes], state_0_out, ..., state_n_out)``."""

    def __init__(self, model: nn.Module, spiking: bool):
        super().__init__()
        self.model, self.spiking = model, spiking

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        frames, *states = args
        state = StreamState(list(states))
        logits = self.model.stream_step(frames, state)
        spikes = (torch.cat(state.spikes, dim=1),) if self.spiking else ()
        return (logits, *spikes, *state.outputs)


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
    module = with_named_inputs(_StreamingStep, 1 + len(slots))(spec.module, spiking).eval()
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
