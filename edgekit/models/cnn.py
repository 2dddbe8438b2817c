"""A small Conv+BN+ReLU classifier: the plain case for BatchNorm folding and INT8."""

from __future__ import annotations

import torch
from torch import nn

from edgekit.models.layers import nontrivial_norm_statistics
from edgekit.models.spec import ModelSpec, register_model


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SmallCNN(nn.Module):
    def __init__(self, in_chans: int, num_classes: int, widths: tuple[int, ...]):
        super().__init__()
        stages: list[nn.Module] = []
        cin = in_chans
        for i, width in enumerate(widths):
            stages += [_conv_bn(cin, width), _conv_bn(width, width)]
            if i < len(widths) - 1:
                stages.append(nn.MaxPool2d(2))
            cin = width
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


@register_model("cnn_small", family="cnn")
def cnn_small(
    img_size: int = 8, in_chans: int = 1, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64)
) -> ModelSpec:
    """Three stages of two Conv3x3+BN+ReLU with max-pooling between, global average pool, linear head."""
    widths = tuple(int(w) for w in widths)
    if img_size % (2 ** (len(widths) - 1)):
        raise ValueError(f"img_size {img_size} must be divisible by {2 ** (len(widths) - 1)} for {len(widths)} stages")
    module = SmallCNN(in_chans, num_classes, widths)
    nontrivial_norm_statistics(module)
    classes = tuple(str(i) for i in range(num_classes)) if num_classes == 10 else None
    return ModelSpec(
        name="cnn_small",
        family="cnn",
        module=module,
        example_inputs=(torch.randn(1, in_chans, img_size, img_size),),
        input_names=("image",),
        output_names=("logits",),
        config={"img_size": img_size, "in_chans": in_chans, "num_classes": num_classes, "widths": list(widths)},
        class_names=classes,
        dataset="digits",
    )
