"""LMUFormer (ICLR 2024): a Legendre-memory token mixer in a transformer-like block, and its spiking twin.

Input (B, T, F): T frames of F features. Every layer is causal (convs pad on the left only), so the same
weights run a whole sequence at once or one frame (or chunk) at a time with the state made explicit:

- ``forward(x)``: whole sequence -> class logits, the mean of the per-frame head outputs;
- ``forward_steps(x)``: the prediction after every frame (the cumulative mean), (B, T, classes);
- ``stream_step(frames, state)``: continue from ``state`` (a :class:`StreamState`) over a chunk of frames.

The spiking variant replaces the activations with LIF neurons (after the embedding's norms, on u, on
BN(m), on h, before the channel mixer and before the head); residual sums stay real. Spikes feed every
weight layer except the first embedding conv and the memory's own recurrence, which is what makes them
accumulate-only on neuromorphic hardware (see :func:`edgekit.models.spiking.synaptic_operations`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.models.layers import nontrivial_norm_statistics, step_slice
from edgekit.models.lmu import LMUMemory
from edgekit.models.spec import ModelSpec, register_model
from edgekit.models.spiking import LIF
from edgekit.models.state import StreamState


class Neuron(nn.Module):
    """An activation site: ReLU / GELU in the ANN, a LIF neuron (with membrane state) in the spiking model."""

    def __init__(self, channels: int, spiking: bool, ann: str = "relu"):
        super().__init__()
        self.channels, self.ann = channels, ann
        self.lif = LIF() if spiking else None
        self.state_name = "lif"

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        if self.lif is None:
            return F.relu(x) if self.ann == "relu" else F.gelu(x)
        v0 = state.take(self.state_name, "lif_membrane", self.channels) if state is not None else None
        out = self.lif(x, v0)  # (spikes, v_last); indexed, not unpacked, so that torch.fx can trace it
        if state is not None:
            state.put(out[1])
            state.spikes.append(out[0])
        return out[0]


class CausalConv(nn.Module):
    """Conv1d that sees the current and the ``kernel - 1`` previous frames; streaming keeps those in a buffer."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.cin, self.history = cin, kernel - 1
        self.conv = nn.Conv1d(cin, cout, kernel, bias=False)
        self.state_name = "conv"

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        if state is None:
            return self.conv(F.pad(x, (self.history, 0)))
        window = torch.cat([state.take(self.state_name, "conv_buffer", self.cin, self.history), x], dim=-1)
        state.put(window[..., -self.history :])
        return self.conv(window)


class Embedding(nn.Module):
    """Two causal k=3 conv + BN stages (no downsampling) and a residual positional conv."""

    def __init__(self, in_features: int, dim: int, spiking: bool):
        super().__init__()
        self.spiking = spiking
        self.conv1, self.bn1, self.act1 = CausalConv(in_features, dim), nn.BatchNorm1d(dim), Neuron(dim, spiking)
        self.conv2, self.bn2 = CausalConv(dim, dim), nn.BatchNorm1d(dim)
        self.pos_act = Neuron(dim, spiking) if spiking else None
        self.pos_conv, self.pos_bn = CausalConv(dim, dim), nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        e = self.act1(self.bn1(self.conv1(x, state)), state)
        e = self.bn2(self.conv2(e, state))
        p = self.pos_act(e, state) if self.pos_act is not None else e
        return e + self.pos_bn(self.pos_conv(p, state))


class LMUCell(nn.Module):
    """u = act(W_u x) (a scalar a frame), m = LMU(u), h = act(W_h [m; x]); the spiking cell also fires on BN(m)."""

    def __init__(self, dim: int, order: int, theta: float, max_len: int, spiking: bool, form: str):
        super().__init__()
        self.in_act = Neuron(dim, spiking) if spiking else None
        self.w_u, self.u_act = nn.Conv1d(dim, 1, 1), Neuron(1, spiking)
        self.memory = LMUMemory(order, theta, max_len, form)
        self.m_bn = nn.BatchNorm1d(order) if spiking else None
        self.m_act = Neuron(order, spiking) if spiking else None
        self.w_h, self.h_act = nn.Conv1d(order + dim, dim, 1), Neuron(dim, spiking)
        self.state_name = "memory"

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        a = self.in_act(x, state) if self.in_act is not None else x
        u = self.u_act(self.w_u(a), state)
        m0 = state.take(self.state_name + ".memory", "lmu_memory", self.memory.order) if state is not None else None
        out = self.memory(u, m0)
        if state is not None:
            state.put(out[1])
        m = out[0]
        if self.m_act is not None:
            m = self.m_act(self.m_bn(m), state)
        return self.h_act(self.w_h(torch.cat([m, a], dim=1)), state)


class LMUBlock(nn.Module):
    """Token mixer (LMU cell -> 1x1 conv -> BN, residual) then channel mixer (1x1 convs C -> rC -> C, residual)."""

    def __init__(self, dim: int, order: int, theta: float, max_len: int, mlp_ratio: int, spiking: bool, form: str):
        super().__init__()
        self.cell = LMUCell(dim, order, theta, max_len, spiking, form)
        self.proj, self.proj_bn = nn.Conv1d(dim, dim, 1), nn.BatchNorm1d(dim)
        hidden = dim * mlp_ratio
        self.mlp_in = Neuron(dim, spiking) if spiking else None
        self.fc1, self.bn1 = nn.Conv1d(dim, hidden, 1), nn.BatchNorm1d(hidden)
        self.mlp_act = Neuron(hidden, spiking, ann="gelu")
        self.fc2, self.bn2 = nn.Conv1d(hidden, dim, 1), nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        x = x + self.proj_bn(self.proj(self.cell(x, state)))
        a = self.mlp_in(x, state) if self.mlp_in is not None else x
        return x + self.bn2(self.fc2(self.mlp_act(self.bn1(self.fc1(a)), state)))


class RunningMean(nn.Module):
    """The prediction so far: the mean of the head's outputs over every frame seen, carried across calls."""

    fx_leaf = True  # the per-frame loop needs concrete shapes

    def forward(self, z: torch.Tensor, total: torch.Tensor, count: torch.Tensor):
        batch, classes = z.shape[0], z.shape[1]
        outs = []
        for t in range(z.shape[-1]):  # reshapes, not squeezes and stacks: they stay on XNNPACK
            total = total + step_slice(z, t, -1).reshape(batch, classes)
            count = count + 1.0
            outs.append((total / count).reshape(batch, 1, classes))
        return (outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)), total, count  # (B, K, classes)


class TimeMean(nn.Module):
    """(B, classes, T) -> (B, classes): the mean over time, as a product with a constant column at the built
    length (XNNPACK does not take a mean over the last dim)."""

    fx_leaf = True  # the length check needs concrete shapes

    def __init__(self, seq_len: int):
        super().__init__()
        self.register_buffer("weights", torch.full((seq_len, 1), 1.0 / seq_len))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != self.weights.shape[0]:
            return z.mean(dim=-1)
        return (z @ self.weights).reshape(z.shape[0], z.shape[1])


class LMUFormer(nn.Module):
    def __init__(
        self,
        in_features: int,
        seq_len: int,
        dim: int,
        order: int,
        theta: float,
        depth: int,
        num_classes: int,
        mlp_ratio: int,
        spiking: bool,
        lmu_form: str,
    ):
        super().__init__()
        self.in_features, self.num_classes, self.spiking = in_features, num_classes, spiking
        self.embed = Embedding(in_features, dim, spiking)
        self.blocks = nn.ModuleList(
            LMUBlock(dim, order, theta, seq_len, mlp_ratio, spiking, lmu_form) for _ in range(depth)
        )
        self.head_act = Neuron(dim, spiking) if spiking else None
        self.head = nn.Conv1d(dim, num_classes, 1)  # per frame
        self.running_mean = RunningMean()
        self.time_mean = TimeMean(seq_len)
        for name, module in self.named_modules():  # unique names for the state tensors
            if hasattr(module, "state_name"):
                module.state_name = name

    def per_frame(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """Head outputs (B, classes, T) of frames (B, T, F)."""
        h = self.embed(x.transpose(1, 2), state)
        for block in self.blocks:
            h = block(h, state)
        if self.head_act is not None:
            h = self.head_act(h, state)
        return self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.time_mean(self.per_frame(x))

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction after each frame, (B, T, classes): what a stream reports as it goes."""
        z = self.per_frame(x).cumsum(dim=-1)
        return (z / torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)).transpose(1, 2)

    def stream_step(self, frames: torch.Tensor, state: StreamState) -> torch.Tensor:
        """Predictions after each of the chunk's frames (B, K, classes), continuing from ``state``."""
        z = self.per_frame(frames, state)
        total = state.take("head.total", "running_sum", self.num_classes)
        count = state.take("head.count", "frame_count", 1)
        out = self.running_mean(z, total, count)
        state.put(out[1])
        state.put(out[2])
        return out[0]


def _register(name: str, spiking: bool, description: str) -> None:
    """One factory signature (its keyword defaults are the config) for both variants."""

    def factory(
        in_features: int = 4,
        seq_len: int = 16,
        dim: int = 64,
        order: int = 32,
        theta: float = 0.0,
        depth: int = 1,
        num_classes: int = 10,
        mlp_ratio: int = 2,
        lmu_form: str = "auto",
    ) -> ModelSpec:
        config = {
            "in_features": in_features, "seq_len": seq_len, "dim": dim, "order": order, "theta": theta,
            "depth": depth, "num_classes": num_classes, "mlp_ratio": mlp_ratio, "lmu_form": lmu_form,
        }  # fmt: skip
        # theta: the memory's window in frames (0: the sequence length)
        module = LMUFormer(in_features, seq_len, dim, order, theta or seq_len, depth, num_classes, mlp_ratio,
                           spiking, lmu_form)  # fmt: skip
        nontrivial_norm_statistics(module)
        return ModelSpec(
            name=name,
            family="lmuformer",
            module=module,
            example_inputs=(torch.randn(1, seq_len, in_features),),
            input_names=("frames",),
            output_names=("logits",),
            config=config,
            class_names=tuple(str(i) for i in range(num_classes)) if num_classes == 10 else None,
            dataset="digits" if seq_len * in_features == 64 and num_classes == 10 else None,
        )

    register_model(name, family="lmuformer", description=description, streams=True)(factory)


_register("lmuformer", False, "LMUFormer: causal conv embedding, Legendre-memory token mixer, per-frame head "
          "averaged over time")  # fmt: skip
_register("lmuformer_spiking", True, "Spiking LMUFormer: LIF neurons (tau 2, threshold 1, hard reset) on the time "
          "axis, surrogate-gradient trained")  # fmt: skip
