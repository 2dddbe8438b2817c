"""Fold every BatchNorm (and SLAB's RepBN) into its neighbours, exactly, before export.

Inference-time BatchNorm is a per-channel affine map ``y = a * x + b`` with
``a = gamma / sqrt(var + eps)`` and ``b = beta - mean * a``; RepBN adds ``alpha * x``, so its ``a`` is
``gamma / sqrt(var + eps) + alpha``. The pass traces the model with torch.fx and, per norm:

1. **conv -> norm**: the norm's input is a Conv1d/2d used by nothing else: ``W' = a W``, ``b' = a b_conv + b``.
2. **linear -> norm**: the same with a Linear feeding a BatchNorm1d over features.
3. **norm -> linear / conv**: every user of the norm's output is a Linear (channels last) or an unpadded,
   ungrouped Conv (channels first): ``W' = W diag(a)``, ``c' = W b + c`` for each user. Padding would
   add zeros *after* the affine map, so padded convs are excluded.
4. otherwise the norm becomes an explicit :class:`Affine` (a multiply and an add), so no BatchNorm op
   survives in the exported graph either way.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

log = logging.getLogger(__name__)


class RepBN(nn.Module):
    """SLAB's re-parameterizable BatchNorm over the channel (last) dim of (B, N, C) tokens: BN(x) + alpha x."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        self.bn = nn.BatchNorm1d(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, N, C)
        return self.bn(x.transpose(1, 2)).transpose(1, 2) + self.alpha * x


class Affine(nn.Module):
    """``x * scale + shift`` along one channel dim: what a BatchNorm is at inference, without the op."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, channel_dim: int):
        super().__init__()
        self.channel_dim = channel_dim
        self.register_buffer("scale", scale.detach().float().clone())
        self.register_buffer("shift", shift.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()  # x.dim() is static under tracing: the reshape is a constant
        shape[self.channel_dim] = -1
        return x * self.scale.reshape(shape) + self.shift.reshape(shape)


@dataclass(frozen=True)
class FoldReport:
    folded: dict[str, int] = field(default_factory=dict)  # pattern -> count
    traced: bool = True
    reason: str = ""

    @property
    def total(self) -> int:
        return sum(self.folded.values())

    @classmethod
    def merge(cls, reports: list[FoldReport]) -> FoldReport:
        """One report for several modules folded apart (the graphs of one bundle)."""
        counts: Counter[str] = Counter()
        for report in reports:
            counts.update(report.folded)
        reasons = "; ".join(r.reason for r in reports if r.reason)
        return cls(dict(sorted(counts.items())), all(r.traced for r in reports), reasons)

    def to_json(self) -> dict:
        return {"folded": dict(self.folded), "total": self.total, "traced": self.traced, "reason": self.reason}


def norm_affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (a, b) with norm(x) == a * x + b at inference."""
    bn = norm.bn if isinstance(norm, RepBN) else norm
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    inv_std = torch.rsqrt(bn.running_var.double() + bn.eps)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(inv_std)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(inv_std)
    a = gamma * inv_std
    b = beta - bn.running_mean.double() * a
    if isinstance(norm, RepBN):
        a = a + norm.alpha.double()
    return a, b


class _Tracer(fx.Tracer):
    """Keeps norms whole; so too modules that choose their spelling at export time (``fx_leaf = True``)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        leaf = isinstance(m, (RepBN, Affine)) or getattr(m, "fx_leaf", False)
        return leaf or super().is_leaf_module(m, qualname)


NORM_TYPES = (_BatchNorm, RepBN)
_CONVS = (nn.Conv1d, nn.Conv2d)


def fold_norms(module: nn.Module) -> tuple[nn.Module, FoldReport]:
    """A folded copy of ``module`` (the original is untouched) and what was folded."""
    if not any(isinstance(m, NORM_TYPES) for m in module.modules()):
        return module, FoldReport()
    source = copy.deepcopy(module).eval()
    try:
        graph = _Tracer().trace(source)
    except Exception as exc:  # data-dependent control flow etc.: leave the model as it is, and say so
        log.warning("BatchNorm folding skipped: the model cannot be traced by torch.fx (%s)", exc)
        return module, FoldReport(traced=False, reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    gm = fx.GraphModule(source, graph)
    modules = dict(gm.named_modules())
    counts: Counter[str] = Counter()
    with torch.no_grad():
        for node in list(gm.graph.nodes):
            if node.op != "call_module" or not isinstance(modules.get(node.target), NORM_TYPES):
                continue
            norm = modules[node.target]
            kind = "repbn" if isinstance(norm, RepBN) else "bn"
            a, b = norm_affine(norm)
            producer = node.args[0]
            if (
                kind == "bn"
                and isinstance(producer, fx.Node)
                and producer.op == "call_module"
                and len(_value_users(producer)) == 1
                and _fold_into_producer(modules[producer.target], norm, a, b)
            ):
                node.replace_all_uses_with(producer)
                counts[f"{_kind(modules[producer.target])}+bn"] += 1
            elif _fold_into_users(node, modules, norm, a, b):
                user_kinds = sorted({_kind(modules[u.target]) for u in _value_users(node)})
                node.replace_all_uses_with(producer)
                counts[f"{kind}+{'/'.join(user_kinds)}"] += 1
            else:
                affine = _to_affine(norm, a, b)
                _set_submodule(gm, node.target, affine)
                counts[f"{kind}->affine"] += 1
                continue
            gm.graph.erase_node(node)
            _set_submodule(gm, node.target, nn.Identity())
    gm.graph.lint()
    gm.recompile()
    gm.eval()
    report = FoldReport(folded={k: v for k, v in sorted(counts.items()) if v})
    log.info("folded %d norm(s): %s", report.total, report.folded)
    return gm, report


def _kind(m: nn.Module) -> str:
    return "conv" if isinstance(m, _CONVS) else "linear" if isinstance(m, nn.Linear) else type(m).__name__.lower()


def _fold_into_producer(producer: nn.Module, norm: nn.Module, a: torch.Tensor, b: torch.Tensor) -> bool:
    """conv -> bn (channels dim 1) or linear -> BatchNorm1d over its out features."""
    if isinstance(producer, _CONVS) and producer.out_channels == a.numel():
        shape = (-1,) + (1,) * (producer.weight.dim() - 1)
    elif isinstance(producer, nn.Linear) and isinstance(norm, nn.BatchNorm1d) and producer.out_features == a.numel():
        shape = (-1, 1)
    else:
        return False
    weight = producer.weight.double() * a.reshape(shape)
    bias = producer.bias.double() if producer.bias is not None else torch.zeros_like(a)
    producer.weight.copy_(weight.to(producer.weight.dtype))
    _set_bias(producer, a * bias + b)
    return True


def _fold_into_users(node: fx.Node, modules: dict[str, nn.Module], norm: nn.Module, a, b) -> bool:
    """norm -> linear (channels last) / unpadded conv (channels first), for every user of the norm."""
    users = _value_users(node)
    if not users or any(u.op != "call_module" or u.args[0] is not node for u in users):
        return False
    targets = [modules[u.target] for u in users]
    channels_last = isinstance(norm, RepBN)  # BatchNorm1d/2d normalise dim 1, RepBN the last dim
    for m in targets:
        if isinstance(m, nn.Linear) and channels_last and m.in_features == a.numel():
            continue
        if isinstance(m, _CONVS) and not channels_last and _unpadded(m) and m.in_channels == a.numel():
            continue
        return False
    for m in targets:
        w = m.weight.double()
        if isinstance(m, nn.Linear):  # W' = W diag(a), c' = W b + c
            new_bias = w @ b + (m.bias.double() if m.bias is not None else 0.0)
            m.weight.copy_((w * a.reshape(1, -1)).to(m.weight.dtype))
        else:  # conv: scale each input channel; the shift is a constant input, summed through the kernel
            shape = (1, -1) + (1,) * (w.dim() - 2)
            new_bias = (w * b.reshape(shape)).flatten(1).sum(1) + (m.bias.double() if m.bias is not None else 0.0)
            m.weight.copy_((w * a.reshape(shape)).to(m.weight.dtype))
        _set_bias(m, new_bias)
    return True


def _value_users(node: fx.Node) -> list[fx.Node]:
    """Users that read the tensor's values; ``x.shape`` / ``x.size()`` reads survive any fold unchanged."""

    def shape_only(u: fx.Node) -> bool:
        if u.op == "call_function" and u.target is getattr and u.args[1] in ("shape", "dtype", "device"):
            return True
        return u.op == "call_method" and u.target in ("size", "dim")

    return [u for u in node.users if not shape_only(u)]


def _unpadded(conv: nn.Module) -> bool:
    padding = conv.padding if isinstance(conv.padding, tuple) else (conv.padding,)
    return conv.groups == 1 and all(p == 0 for p in padding) and padding != ("same",)


def _set_bias(m: nn.Module, value: torch.Tensor) -> None:
    value = value.to(m.weight.dtype)
    if m.bias is None:
        m.bias = nn.Parameter(value)
    else:
        m.bias.copy_(value)


def _to_affine(norm: nn.Module, a: torch.Tensor, b: torch.Tensor) -> Affine:
    # BatchNorm normalises dim 1 (channels first); RepBN the last dim (tokens, channels last).
    return Affine(a, b, channel_dim=-1 if isinstance(norm, RepBN) else 1)


def _set_submodule(root: nn.Module, target: str, new: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, name, new)
