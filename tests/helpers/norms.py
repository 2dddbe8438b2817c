"""BatchNorm / RepBN statistics far from their defaults, so that a fold that drops a term is caught."""

from __future__ import annotations

import torch
from torch import nn

from edgekit.transforms.reparam import RepBN


def randomize_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            bn = m.bn if isinstance(m, RepBN) else m
            if isinstance(m, RepBN):
                m.alpha.fill_(0.7)
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                c = bn.num_features
                bn.running_mean.copy_(torch.randn(c, generator=g))
                bn.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
                bn.weight.copy_(torch.randn(c, generator=g))
                bn.bias.copy_(torch.randn(c, generator=g))
    return module.eval()
