"""Explicit streaming state: what a model's ``stream_step`` reads and writes, one tensor per piece.

A model streams when its module has ``stream_step(frames, state: StreamState) -> predictions`` and takes every
piece of state through ``state.take`` and hands its successor to ``state.put``, always in the same order.
``transforms/streaming.py`` turns that into one graph whose inputs and outputs are those tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edgekit.layouts import StateSlot


@dataclass
class StreamState:
    """The state tensors one streaming call reads and writes, in a fixed order.

    ``inputs=None`` starts from zeros (and doubles as the way to discover the layout). ``take`` hands out
    the next input, ``put`` records its successor; modules call them in the same order every call.
    """

    inputs: list[torch.Tensor] | None = None
    batch: int = 1
    slots: list[StateSlot] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)
    spikes: list[torch.Tensor] = field(default_factory=list)

    def take(self, name: str, kind: str, *shape: int) -> torch.Tensor:
        slot = StateSlot(name.replace(".", "_"), (self.batch, *shape), kind)
        self.slots.append(slot)
        if self.inputs is None:
            return torch.zeros(slot.shape)
        return self.inputs[len(self.slots) - 1]

    def put(self, value: torch.Tensor) -> None:
        self.outputs.append(value)
