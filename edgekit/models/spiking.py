"""Leaky integrate-and-fire neurons in plain torch, with the time axis as the sequence axis.

Per step ``v <- v + (x - v) / tau``, spike ``s = [v >= v_th]``, hard reset ``v <- v (1 - s)``. Training
sees a sigmoid surrogate for the step's gradient; inference (and every export) the hard step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.models.layers import step_slice


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, ``alpha * sigmoid'(alpha x)`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        sig = torch.sigmoid(ctx.alpha * x)
        return grad * ctx.alpha * sig * (1 - sig), None


class LIF(nn.Module):
    """Spikes (B, C, T) from currents (B, C, T); ``forward(x, v0)`` returns ``(spikes, v_last)``.

    Without ``v0`` the membrane starts at rest (zero). While a :func:`recording` is active every call
    appends its spikes and pre-reset potentials, for spike rates and threshold-margin checks.
    """

    fx_leaf = True  # BatchNorm folding traces around it: the time loop needs concrete shapes

    def __init__(self, tau: float = 2.0, threshold: float = 1.0, surrogate_alpha: float = 4.0):
        super().__init__()
        self.tau, self.threshold, self.surrogate_alpha = tau, threshold, surrogate_alpha
        self.record: SpikeRecord | None = None

    def forward(self, x: torch.Tensor, v0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # Frames are sliced with their time axis kept (B, C, 1) and reshaped rather than (un)squeezed: slices and
        # reshapes lower into XNNPACK, selects and squeezes do not (see layers.step_slice).
        batch, channels = x.shape[0], x.shape[1]
        # v + (x - v) / tau = decay v + x / tau: one division for the whole input, two ops a step
        drive = x / self.tau
        decay = 1.0 - 1.0 / self.tau
        v = None if v0 is None else v0.reshape(batch, channels, 1)
        spikes, potentials = [], []
        for t in range(x.shape[-1]):
            drive_t = step_slice(drive, t, -1)
            v = drive_t if v is None else v * decay + drive_t
            s = self._fire(v)
            potentials.append(v)
            spikes.append(s)
            v = v * (1.0 - s)
        out = spikes[0] if len(spikes) == 1 else torch.cat(spikes, dim=-1)
        if self.record is not None:
            self.record.add(self, out.detach(), torch.cat(potentials, dim=-1).detach())
        return out, v.reshape(batch, channels)

    def _fire(self, v: torch.Tensor) -> torch.Tensor:
        if self.training and v.requires_grad:
            return _SpikeFunction.apply(v - self.threshold, self.surrogate_alpha)
        # The Heaviside step as clamp(floor(.), 0, 1): exactly 1 at or above the threshold and 0 below, in ops
        # every delegate runs (a comparison and a cast to float fall out of XNNPACK). floor(v - th) is exact near
        # the threshold (the subtraction of close floats is exact); at th = 1 floor(v) alone says the same.
        if self.threshold == 1.0:
            return torch.clamp(torch.floor(v), 0.0, 1.0)
        return torch.clamp(torch.floor(v - self.threshold) + 1.0, 0.0, 1.0)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, threshold={self.threshold}"


@dataclass
class SpikeRecord:
    """Spikes and pre-reset membrane potentials of every LIF call, in call order."""

    spikes: list[torch.Tensor] = field(default_factory=list)
    potentials: list[torch.Tensor] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    _module_names: dict[int, str] = field(default_factory=dict)

    def add(self, module: LIF, spikes: torch.Tensor, potentials: torch.Tensor) -> None:
        self.spikes.append(spikes)
        self.potentials.append(potentials)
        self.names.append(self._module_names.get(id(module), "lif"))

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(spikes, potentials), each (B, sum of channels, T) in call order."""
        return torch.cat(self.spikes, dim=1), torch.cat(self.potentials, dim=1)


@contextmanager
def recording(module: nn.Module) -> Iterator[SpikeRecord]:
    """Record what every LIF inside ``module`` emits while the block runs."""
    record = SpikeRecord()
    lifs = [(name, m) for name, m in module.named_modules() if isinstance(m, LIF)]
    record._module_names = {id(m): name for name, m in lifs}
    for _, m in lifs:
        m.record = record
    try:
        yield record
    finally:
        for _, m in lifs:
            m.record = None


# Energy per operation at 45 nm (Horowitz, ISSCC 2014), the figures spiking-network papers compare with:
# a 32-bit float multiply-accumulate 4.6 pJ, an accumulate 0.9 pJ.
ENERGY_PJ = {"mac": 4.6, "ac": 0.9}


@dataclass(frozen=True)
class SynapticOperations:
    """Weight-layer work per sequence: multiply-accumulates where inputs are real, accumulates where they are
    spikes (a 1 adds the weight, a 0 costs nothing). Elementwise work (norms, LIF updates, residuals) is not
    counted, as in the papers."""

    macs: float
    acs: float

    def energy_uj(self) -> float:
        """Estimated synaptic energy per sequence in microjoules (45 nm figures, not a measurement)."""
        return (self.macs * ENERGY_PJ["mac"] + self.acs * ENERGY_PJ["ac"]) * 1e-6


def synaptic_operations(module: nn.Module, x: torch.Tensor) -> SynapticOperations:
    """MACs and ACs per sequence of ``module`` on a batch ``x``, counted from the actual inputs of each layer.

    The LMU memory is counted in its recurrent form (``Abar m`` a MAC per entry, ``Bbar u`` an AC per spike),
    which is what a streaming device runs.
    """
    from edgekit.models.lmu import LMUMemory

    totals = {"mac": 0.0, "ac": 0.0}

    def add(inputs: torch.Tensor, dense: float, per_input: torch.Tensor) -> None:
        binary = bool(((inputs == 0) | (inputs == 1)).all())
        totals["ac" if binary else "mac"] += float(per_input.sum()) if binary else dense

    def on_conv(m: nn.Conv1d, args, _out) -> None:
        (inp,) = args[:1]
        k = m.kernel_size[0]
        out_len = (inp.shape[-1] - m.dilation[0] * (k - 1) - 1) // m.stride[0] + 1
        dense = inp.shape[0] * out_len * (m.in_channels // m.groups) * k * m.out_channels
        window = torch.ones(1, 1, k, dtype=inp.dtype)
        active = (inp != 0).to(inp.dtype).sum(1, keepdim=True)  # nonzero inputs per frame
        per_output = F.conv1d(active, window, stride=m.stride, dilation=m.dilation)  # in each receptive field
        add(inp, dense, per_output * (m.out_channels // m.groups))

    def on_linear(m: nn.Linear, args, _out) -> None:
        (inp,) = args[:1]
        add(inp, inp.numel() * m.out_features, (inp != 0).to(inp.dtype) * m.out_features)

    def on_memory(m: LMUMemory, args, _out) -> None:
        u = args[0]  # (B, 1, T)
        totals["mac"] += u.numel() * m.order * m.order
        add(u, u.numel() * m.order, (u != 0).to(u.dtype) * m.order)

    hooks = []
    for m in module.modules():
        hook = {nn.Conv1d: on_conv, nn.Linear: on_linear, LMUMemory: on_memory}.get(type(m))
        if hook:
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    batch = x.shape[0]
    return SynapticOperations(totals["mac"] / batch, totals["ac"] / batch)
