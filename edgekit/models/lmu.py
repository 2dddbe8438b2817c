"""The Legendre Memory Unit's linear memory, computed three equivalent ways.

The memory of order ``d`` over a sliding window of ``theta`` steps follows ``m_t = Abar m_{t-1} + Bbar u_t``
(``u`` a scalar per step), where (Abar, Bbar) discretise the continuous Legendre system by zero-order
hold with dt = 1. Unrolled from ``m_{-1} = 0`` that is the causal convolution of ``u`` with the impulse
response ``H[k] = Abar^k Bbar``, so a whole sequence has three spellings:

- ``fft``: the convolution through rfft/irfft, padded to 2T (cheapest to train; no runtime lowers FFT ops);
- ``conv``: the same convolution as a plain causal Conv1d with ``H`` as a fixed kernel (whole-sequence export);
- ``recurrent``: the recurrence, one matrix-vector product a step (streaming, with ``m`` as explicit state).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.models.layers import step_slice

FORMS = ("fft", "conv", "recurrent")


def legendre_system(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous-time (A, B) of the Legendre memory, float64."""
    i = torch.arange(order, dtype=torch.float64).reshape(-1, 1)
    j = torch.arange(order, dtype=torch.float64).reshape(1, -1)
    scale = (2 * i + 1) / theta
    sign = torch.where(i < j, -torch.ones(()), (-1.0) ** (i - j + 1))
    a = scale * sign
    b = scale.reshape(-1) * (-1.0) ** torch.arange(order, dtype=torch.float64)
    return a, b


def discretize_zoh(a: torch.Tensor, b: torch.Tensor, dt: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold: ``exp([[A, B], [0, 0]] dt) = [[Abar, Bbar], [0, I]]`` (what scipy's cont2discrete does)."""
    n = a.shape[0]
    block = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    block[:n, :n] = a * dt
    block[:n, n] = b * dt
    expm = torch.linalg.matrix_exp(block)
    return expm[:n, :n], expm[:n, n]


def impulse_response(a_bar: torch.Tensor, b_bar: torch.Tensor, length: int) -> torch.Tensor:
    """``H[k] = Abar^k Bbar`` for k < length, shape (length, order), float64."""
    rows = [b_bar]
    for _ in range(length - 1):
        rows.append(a_bar @ rows[-1])
    return torch.stack(rows)


class LMUMemory(nn.Module):
    """``m`` (B, order, T) from ``u`` (B, 1, T); ``forward(u, m0)`` returns ``(m, m_last)``.

    Without ``m0`` the sequence starts from zero memory and ``form`` picks the spelling (``auto``: FFT while
    training, the causal conv otherwise); with ``m0`` (B, order) the recurrence continues from it, which is
    how a streaming graph carries the memory from one call to the next.
    """

    fx_leaf = True  # BatchNorm folding traces around it: the time loop needs concrete shapes

    def __init__(self, order: int, theta: float, max_len: int, form: str = "auto"):
        super().__init__()
        if form not in (*FORMS, "auto"):
            raise ValueError(f"unknown LMU form {form!r}; choose one of {', '.join((*FORMS, 'auto'))}")
        self.order, self.theta, self.max_len, self.form = order, theta, max_len, form
        a_bar, b_bar = discretize_zoh(*legendre_system(order, theta))
        # Derived from the config in float64 and rounded once. Persistent buffers although they are not learned:
        # ExecuTorch refuses a non-persistent buffer that a delegate takes as a weight.
        self.register_buffer("a_bar_t", a_bar.T.float().contiguous())
        self.register_buffer("b_bar", b_bar.float())
        kernel = impulse_response(a_bar, b_bar, max_len).float()
        self.register_buffer("kernel", kernel)
        # conv1d correlates: the kernel reversed in time, (order, 1, max_len), stored so that the exported graph
        # holds it as a constant weight (a weight computed in the graph keeps the conv off XNNPACK)
        self.register_buffer("conv_weight", kernel.flip(0).T.unsqueeze(1).contiguous())

    def resolved_form(self) -> str:
        return self.form if self.form != "auto" else ("fft" if self.training else "conv")

    def forward(self, u: torch.Tensor, m0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        form = "recurrent" if m0 is not None else self.resolved_form()
        steps = u.shape[-1]
        if form != "recurrent" and steps > self.max_len:
            raise ValueError(f"sequence of {steps} steps is longer than the LMU's {self.max_len}")
        m = getattr(self, f"_{form}")(u, m0)
        return m, m[..., -1:].reshape(m.shape[0], self.order)

    def _fft(self, u: torch.Tensor, m0: torch.Tensor | None) -> torch.Tensor:
        steps = u.shape[-1]
        n = 2 * steps
        h = torch.fft.rfft(self.kernel[:steps].T, n=n)  # (order, n/2 + 1)
        return torch.fft.irfft(torch.fft.rfft(u, n=n) * h, n=n)[..., :steps]

    def _conv(self, u: torch.Tensor, m0: torch.Tensor | None) -> torch.Tensor:
        steps = u.shape[-1]
        weight = self.conv_weight if steps == self.max_len else self.conv_weight[..., self.max_len - steps :]
        return F.conv1d(F.pad(u, (steps - 1, 0)), weight)

    def _recurrent(self, u: torch.Tensor, m0: torch.Tensor | None) -> torch.Tensor:
        batch = u.shape[0]
        m = m0 if m0 is not None else u.new_zeros(batch, self.order)
        out = []
        for t in range(u.shape[-1]):  # slices and reshapes, not selects and stacks: they stay on XNNPACK
            m = m @ self.a_bar_t + step_slice(u, t, -1).reshape(batch, 1) * self.b_bar
            out.append(m.reshape(batch, self.order, 1))
        return out[0] if len(out) == 1 else torch.cat(out, dim=-1)
