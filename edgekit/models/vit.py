"""Plain Vision Transformer classifiers (ViT / DeiT layout), the family the splitter builds on."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.models.layers import Block, LayerNorm, init_linear_weights
from edgekit.models.spec import ModelSpec, image_classifier_spec, register_model


class VisionTransformer(nn.Module):
    def __init__(
        self,
        img_size: int,
        patch_size: int,
        in_chans: int,
        num_classes: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        block_heads: list[int] | None = None,
        block_mlp: list[int] | None = None,
        attention: str = "softmax",
        clip_alpha: float = 1.0,
        block_head_dim: list[int] | None = None,
        attention_scale: float | None = None,
    ):
        """``block_heads`` / ``block_mlp`` / ``block_head_dim`` give each block its own head count, MLP width
        and head dimension (a pruned ViT; the head dimension is ``dim // heads`` by default).
        ``attention_scale`` is the query scale of every block (default head_dim^-0.5): a pruned ViT keeps
        the one it was trained with. ``attention`` is softmax, clipped or gated
        (:class:`~edgekit.models.layers.Attention`)."""
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_patches + 1, dim) * 0.02)
        head_dim = dim // heads
        block_heads = list(block_heads or [heads] * depth)
        block_mlp = list(block_mlp or [int(dim * mlp_ratio)] * depth)
        block_head_dim = list(block_head_dim or [head_dim] * depth)
        if not len(block_heads) == len(block_mlp) == len(block_head_dim) == depth:
            raise ValueError(f"block_heads, block_mlp and block_head_dim need one entry per block ({depth})")
        self.blocks = nn.Sequential(
            *[
                Block(dim, h, m, head_dim=d, attention=attention, clip_alpha=clip_alpha, scale=attention_scale)
                for h, m, d in zip(block_heads, block_mlp, block_head_dim, strict=True)
            ]
        )
        self.norm = LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.apply(init_linear_weights)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The tokens the first block sees: class token first, then the patches, positions added (B, 1 + N, dim)."""
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, dim)
        # Prepending the class token by padding a zero row and adding (cls + pos) is exact and, unlike
        # cat(cls.expand(B, ...)), leaves no expand op outside the XNNPACK delegate.
        start = F.pad(self.cls_token, (0, 0, 0, self.num_patches))
        return F.pad(tokens, (0, 0, 1, 0)) + (self.pos_embed + start)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The pooled (class-token) feature of the last block's tokens, (B, dim)."""
        return self.norm(tokens)[:, :1].flatten(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled (class-token) feature, (B, dim)."""
        return self.pool(self.blocks(self.embed(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _vit_spec(name: str, **config) -> ModelSpec:
    return image_classifier_spec(name, "vit", VisionTransformer(**config), config)


@register_model("vit_tiny", family="vit")
def vit_tiny(
    img_size: int = 224,
    patch_size: int = 16,
    in_chans: int = 3,
    num_classes: int = 1000,
    dim: int = 192,
    depth: int = 12,
    heads: int = 3,
    mlp_ratio: float = 4.0,
    attention: str = "softmax",
    clip_alpha: float = 1.0,
) -> ModelSpec:
    """ViT-Ti/16 (DeiT-tiny layout): 12 blocks of width 192, 3 heads; every size configurable; attention
    softmax, clipped or gated (outlier-free variants for INT8)."""
    return _vit_spec("vit_tiny", **locals())


@register_model("vit_digits", family="vit", description="ViT sized for 8x8 digits: 2x2 patches, 4 blocks of width 64")
def vit_digits(
    img_size: int = 8,
    patch_size: int = 2,
    in_chans: int = 1,
    num_classes: int = 10,
    dim: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    attention: str = "softmax",
    clip_alpha: float = 1.0,
) -> ModelSpec:
    return replace(_vit_spec("vit_digits", **locals()), dataset="digits")
