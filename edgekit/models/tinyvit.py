"""TinyViT (Wu et al., ECCV 2022), written for export.

Same architecture and parameter names as timm 1.0's port (so timm checkpoints load by name, and the
official microsoft/Cream checkpoints through :func:`remap_tinyvit_keys`). What
differs is how the forward pass is spelled, so that every op lands on a delegate:

- the attention bias is a (heads, N, N) buffer materialised from the learned table whenever the
  model enters eval mode or loads weights, instead of a gather by indices on every call (a gather
  is an ``index.Tensor`` that XNNPACK cannot take, and timm's per-device cache goes stale);
- q, k and v are sliced from the fused projection and attention runs as 3-D ``bmm``;
- windows are cut with one 5-D reshape/transpose (batch folded into the window-row axis);
- the final mean pool is a 4-D ``mean`` over (H, W) with ``keepdim`` (the form XNNPACK accepts);
- LayerNorm is edgekit's delegate-friendly one; every Conv2d+BN pair folds before export.

Every patch merging has stride 2, as in the official classification code and timm (1.26 GMACs for
5M at 224 by torch's flop counter, the paper's 1.3G). MobileSAM's TinyViT encoder merges into the last
stage with stride 1 instead (stage 4 at 1/16 resolution, 1.64 GMACs): ``last_merge_stride=1``.
"""

from __future__ import annotations

import itertools
import re

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.models.layers import LayerNorm, init_linear_weights
from edgekit.models.spec import ModelSpec, image_classifier_spec, register_model


class ConvNorm(nn.Sequential):
    """Conv2d without bias + BatchNorm2d (folded into one conv before export)."""

    def __init__(self, cin: int, cout: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.conv1 = ConvNorm(in_chans, dim // 2, 3, 2, 1)
        self.act = nn.GELU()
        self.conv2 = ConvNorm(dim // 2, dim, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x)))


class MBConv(nn.Module):
    def __init__(self, dim: int, expand_ratio: float):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvNorm(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = ConvNorm(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = ConvNorm(hidden, dim)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """(B, C, H, W) feature map, or (B, H*W, C) tokens when ``tokens_in``, -> (B, H'*W', C_out) tokens."""

    def __init__(self, resolution: int, dim: int, out_dim: int, stride: int, tokens_in: bool):
        super().__init__()
        self.resolution = resolution
        self.tokens_in = tokens_in  # known when the model is built, so tracing sees no branch on shapes
        self.act = nn.GELU()
        self.conv1 = ConvNorm(dim, out_dim)
        self.conv2 = ConvNorm(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvNorm(out_dim, out_dim)
        self.out_resolution = (resolution - 1) // stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens_in:
            b, _, c = x.shape
            x = x.transpose(1, 2).reshape(b, c, self.resolution, self.resolution)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class ConvStage(nn.Module):
    def __init__(self, dim: int, depth: int, expand_ratio: float):
        super().__init__()
        self.blocks = nn.Sequential(*[MBConv(dim, expand_ratio) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = LayerNorm(dim, eps=1e-5)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


def relative_offset_index(window: int) -> tuple[torch.Tensor, int]:
    """(N, N) index of each token pair's |dy|, |dx| offset into the bias table, and the table size."""
    points = list(itertools.product(range(window), range(window)))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(offset, len(offsets)))
    n = len(points)
    return torch.tensor(idxs, dtype=torch.long).view(n, n), len(offsets)


class Attention(nn.Module):
    """Windowed multi-head attention with a learned bias per (head, relative offset)."""

    def __init__(self, dim: int, key_dim: int, heads: int, window: int, attn_ratio: float = 1.0):
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * heads
        self.scale = key_dim**-0.5
        self.norm = LayerNorm(dim, eps=1e-5)
        self.qkv = nn.Linear(dim, self.dh + 2 * key_dim * heads)
        self.proj = nn.Linear(self.dh, dim)
        idxs, table = relative_offset_index(window)
        self.attention_biases = nn.Parameter(torch.zeros(heads, table))
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)
        n = window * window
        self.register_buffer("attention_bias", torch.zeros(heads, n, n), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _keys: module.materialize_bias())

    @torch.no_grad()
    def materialize_bias(self) -> None:
        """Gather the (heads, N, N) bias from the table; called on eval() and after loading weights."""
        self.attention_bias.copy_(self.attention_biases[:, self.attention_bias_idxs])

    def train(self, mode: bool = True) -> Attention:
        super().train(mode)
        if not mode:
            self.materialize_bias()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, kd, d = self.heads, self.key_dim, self.d
        qkv = self.qkv(self.norm(x)).reshape(b, n, h, 2 * kd + d)  # per-head [q | k | v], the checkpoint layout

        def heads_first(t: torch.Tensor, width: int) -> torch.Tensor:  # (B, N, H, w) -> (B*H, N, w)
            return t.transpose(1, 2).reshape(b * h, n, width)

        q = heads_first(qkv[..., :kd], kd) * self.scale
        k = heads_first(qkv[..., kd : 2 * kd], kd)
        v = heads_first(qkv[..., 2 * kd :], d)
        # Training needs the gradient through the gather; inference uses the materialised buffer.
        bias = self.attention_biases[:, self.attention_bias_idxs] if self.training else self.attention_bias
        attn = torch.bmm(q, k.transpose(1, 2)).reshape(b, h, n, n) + bias
        attn = attn.softmax(dim=-1).reshape(b * h, n, n)
        out = torch.bmm(attn, v).reshape(b, h, n, d).transpose(1, 2).reshape(b, n, self.dh)
        return self.proj(out)


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, heads: int, window: int, mlp_ratio: float, local_conv: int):
        super().__init__()
        self.dim, self.resolution, self.window = dim, resolution, window
        self.attn = Attention(dim, dim // heads, heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvNorm(dim, dim, local_conv, 1, local_conv // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        r, ws = self.resolution, self.window
        if r == ws:
            y = self.attn(x)
        else:
            pad = (ws - r % ws) % ws
            y = x.reshape(b, r, r, c)
            if pad:
                y = F.pad(y, (0, 0, 0, pad, 0, pad))
            p = r + pad
            nw = p // ws
            # (B, P, P, C) -> (B*nW*nW, ws*ws, C): batch folded into the window-row axis keeps it 5-D
            y = y.reshape(b * nw, ws, nw, ws, c).transpose(1, 2).reshape(b * nw * nw, ws * ws, c)
            y = self.attn(y)
            y = y.reshape(b * nw, nw, ws, ws, c).transpose(1, 2).reshape(b, p, p, c)
            if pad:
                y = y[:, :r, :r]
            y = y.reshape(b, n, c)
        x = x + y
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, r, r)).reshape(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class TinyViTStage(nn.Module):
    def __init__(self, in_dim, dim, resolution, depth, heads, window, mlp_ratio, local_conv, merge_stride, tokens_in):
        super().__init__()
        self.downsample = PatchMerging(resolution, in_dim, dim, merge_stride, tokens_in)
        res = self.downsample.out_resolution
        self.blocks = nn.Sequential(
            *[TinyViTBlock(dim, res, heads, window, mlp_ratio, local_conv) for _ in range(depth)]
        )
        self.out_resolution = res

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class ClassifierHead(nn.Module):
    def __init__(self, dim: int, num_classes: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.norm = LayerNorm(dim, eps=1e-5)  # timm's name; Cream's `norm_head` is mapped onto it
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        grid = x.transpose(1, 2).reshape(b, c, self.resolution, self.resolution)
        pooled = grid.mean(dim=(2, 3), keepdim=True).flatten(1)  # token mean, as a delegate-friendly 4-D pool
        return self.fc(self.norm(pooled))


class TinyViT(nn.Module):
    def __init__(
        self,
        img_size: int,
        in_chans: int,
        num_classes: int,
        embed_dims: tuple[int, ...],
        depths: tuple[int, ...],
        num_heads: tuple[int, ...],
        window_sizes: tuple[int, ...],
        mlp_ratio: float,
        mbconv_expand_ratio: float,
        local_conv_size: int,
        last_merge_stride: int,
    ):
        super().__init__()
        if not len(embed_dims) == len(depths) == len(num_heads) == len(window_sizes):
            raise ValueError("embed_dims, depths, num_heads and window_sizes need one entry per stage")
        if img_size % 4:
            raise ValueError(f"img_size {img_size} must be a multiple of 4 (the stem has stride 4)")
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        res = img_size // 4
        stages: list[nn.Module] = [ConvStage(embed_dims[0], depths[0], mbconv_expand_ratio)]
        for i in range(1, len(depths)):
            stride = last_merge_stride if i == len(depths) - 1 else 2
            stage = TinyViTStage(
                embed_dims[i - 1], embed_dims[i], res, depths[i], num_heads[i], window_sizes[i],
                mlp_ratio, local_conv_size, stride, tokens_in=i > 1,
            )  # fmt: skip
            res = stage.out_resolution
            stages.append(stage)
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(embed_dims[-1], num_classes, res)
        self.apply(init_linear_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.patch_embed(x)))

    def remap_state_dict(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Accept timm's key layout (ours) or the official Cream one; returns (state, our key -> file key)."""
        return remap_tinyvit_keys(state)


# Official microsoft/Cream names -> timm / edgekit names. Applied in order to each key.
_CREAM_RULES: tuple[tuple[str, str], ...] = (
    (r"^patch_embed\.seq\.0\.", "patch_embed.conv1."),
    (r"^patch_embed\.seq\.2\.", "patch_embed.conv2."),
    (r"\.c\.(weight|bias)$", r".conv.\1"),
    (r"^norm_head\.", "head.norm."),
    (r"^head\.(weight|bias)$", r"head.fc.\1"),
)


def remap_tinyvit_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Map a TinyViT state dict in the Cream layout onto ours; timm-layout dicts pass through.

    Cream keeps each stage's patch merging at the end of the stage (``layers.{i}.downsample``);
    timm and edgekit put it at the start of the next one (``stages.{i+1}.downsample``). Conv+BN pairs
    are ``.c`` / ``.bn`` in Cream and ``.conv`` / ``.bn`` here; Cream's ``norm_head`` and ``head`` become
    ``head.norm`` and ``head.fc`` (the names of timm 1.0's classifier head). The derived
    ``attention_bias_idxs`` buffers are dropped (they are rebuilt from the window size), which is also
    why a checkpoint for another window size fails on the bias table shape.
    """
    cream = any(k.startswith(("layers.", "patch_embed.seq.")) for k in state)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        if key.endswith("attention_bias_idxs"):
            continue
        # timm before its 2023 hub weights (and edgekit before it took timm's name) called the head's norm
        # `head.norm_head`; both layouts still turn up in saved files.
        new = re.sub(r"^head\.norm_head\.", "head.norm.", key)
        if cream:
            match = re.match(r"^layers\.(\d+)\.(blocks|downsample)\.(.*)$", new)
            if match:
                stage = int(match[1]) + (1 if match[2] == "downsample" else 0)
                new = f"stages.{stage}.{match[2]}.{match[3]}"
            for pattern, repl in _CREAM_RULES:
                new = re.sub(pattern, repl, new)
        out[new] = value
        origin[new] = key
    return out, origin


_SIZES = {
    "5m": ((64, 128, 160, 320), (2, 4, 5, 10)),
    "11m": ((64, 128, 256, 448), (2, 4, 8, 14)),
    "21m": ((96, 192, 384, 576), (3, 6, 12, 18)),
}
# Window sizes per input resolution (the paper's 224 models and the 384/512 fine-tunes).
_WINDOWS = {224: (7, 7, 14, 7), 384: (12, 12, 24, 12), 512: (16, 16, 32, 16)}


def _tinyvit_spec(name: str, size: str, img_size: int, window_sizes, embed_dims, num_heads, **config) -> ModelSpec:
    dims, heads = _SIZES[size]
    embed_dims = tuple(embed_dims or dims)
    num_heads = tuple(num_heads or heads)
    if window_sizes is None:
        if img_size not in _WINDOWS:
            raise ValueError(f"no default windows for img_size {img_size}; give window_sizes (4 ints)")
        window_sizes = _WINDOWS[img_size]
    window_sizes = tuple(window_sizes)
    module = TinyViT(img_size=img_size, embed_dims=embed_dims, num_heads=num_heads, window_sizes=window_sizes, **config)
    full = {"img_size": img_size, "embed_dims": list(embed_dims), "num_heads": list(num_heads),
            "window_sizes": list(window_sizes), **config}  # fmt: skip
    full["depths"] = list(config["depths"])
    return image_classifier_spec(name, "tinyvit", module, full)


def _register(size: str) -> None:
    def factory(
        img_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: tuple[int, ...] | None = None,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] | None = None,
        window_sizes: tuple[int, ...] | None = None,
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        last_merge_stride: int = 2,
    ) -> ModelSpec:
        return _tinyvit_spec(
            f"tinyvit_{size}", size, img_size, window_sizes, embed_dims, num_heads, in_chans=in_chans,
            num_classes=num_classes, depths=tuple(depths), mlp_ratio=mlp_ratio,
            mbconv_expand_ratio=mbconv_expand_ratio, local_conv_size=local_conv_size,
            last_merge_stride=last_merge_stride,
        )  # fmt: skip

    dims = _SIZES[size][0]
    description = f"TinyViT-{size.upper()} (dims {list(dims)}), 224/384/512 via img_size; timm or Cream weights"
    register_model(f"tinyvit_{size}", family="tinyvit", description=description)(factory)


for _size in _SIZES:
    _register(_size)
