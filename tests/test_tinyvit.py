"""TinyViT: the export-friendly spellings compute the reference functions; checkpoints load in both layouts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from edgekit.errors import BundleError
from edgekit.models import create_model, prepare_model
from edgekit.models.tinyvit import Attention, TinyViTBlock
from tests.conftest import TINY_CONFIGS

TINY = TINY_CONFIGS["tinyvit_5m"]


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if "bias" in name else 0.2))
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return module.eval()


def reference_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """The published formulation: split the per-head qkv, 4-D matmuls, bias gathered by index."""
    b, n, _ = x.shape
    qkv = attn.qkv(torch.nn.functional.layer_norm(x, x.shape[-1:], attn.norm.weight, attn.norm.bias, 1e-5))
    q, k, v = qkv.view(b, n, attn.heads, -1).split([attn.key_dim, attn.key_dim, attn.d], dim=3)
    q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
    scores = (q @ k.transpose(-2, -1)) * attn.scale + attn.attention_biases[:, attn.attention_bias_idxs]
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, attn.dh)
    return attn.proj(out)


def test_attention_matches_the_reference_in_eval_and_training():
    attn = randomize(Attention(dim=12, key_dim=4, heads=3, window=3))
    x = torch.randn(2, 9, 12)
    want = reference_attention(attn, x)
    torch.testing.assert_close(attn(x), want, rtol=1e-5, atol=1e-5)  # eval: materialised buffer
    attn.train()
    torch.testing.assert_close(attn(x), want, rtol=1e-5, atol=1e-5)  # training: gather


def test_bias_buffer_follows_weight_loading_and_training():
    attn = randomize(Attention(dim=8, key_dim=4, heads=2, window=2))
    other = randomize(Attention(dim=8, key_dim=4, heads=2, window=2), seed=1)
    attn.load_state_dict(other.state_dict())
    torch.testing.assert_close(attn.attention_bias, other.attention_biases[:, other.attention_bias_idxs])
    attn.train()
    with torch.no_grad():
        attn.attention_biases.add_(1.0)
    attn.eval()
    torch.testing.assert_close(attn.attention_bias, attn.attention_biases[:, attn.attention_bias_idxs])


@pytest.mark.parametrize("resolution, window", [(4, 2), (5, 3), (4, 4)])
def test_windowed_block_equals_attention_window_by_window(resolution, window):
    block = randomize(TinyViTBlock(dim=8, resolution=resolution, heads=2, window=window, mlp_ratio=2.0, local_conv=3))
    x = torch.randn(2, resolution * resolution, 8)
    # Reference: pad the map, run attention on each window separately, crop, then the rest of the block.
    grid = x.reshape(2, resolution, resolution, 8)
    pad = (window - resolution % window) % window
    grid = torch.nn.functional.pad(grid, (0, 0, 0, pad, 0, pad))
    out = torch.zeros_like(grid)
    for i in range(0, resolution + pad, window):
        for j in range(0, resolution + pad, window):
            tile = grid[:, i : i + window, j : j + window].reshape(2, window * window, 8)
            out[:, i : i + window, j : j + window] = block.attn(tile).reshape(2, window, window, 8)
    y = x + out[:, :resolution, :resolution].reshape(2, -1, 8)
    y = block.local_conv(y.transpose(1, 2).reshape(2, 8, resolution, resolution)).reshape(2, 8, -1).transpose(1, 2)
    want = y + block.mlp(y)
    torch.testing.assert_close(block(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name, params", [("tinyvit_5m", 5_392_764), ("tinyvit_11m", 10_996_972), ("tinyvit_21m", 21_198_568)]
)
def test_full_size_parameter_counts(name, params):
    # The paper's 5M / 11M / 21M (timm reports 5.39M, 11.0M, 21.2M).
    assert create_model(name).parameters == params


@pytest.mark.parametrize("size", [224, 384, 512])
def test_resolution_variants_use_whole_map_windows_in_stages_3_and_4(size):
    spec = create_model("tinyvit_21m", img_size=size)
    stage2, stage3, stage4 = (spec.module.stages[i].blocks[0] for i in (1, 2, 3))
    assert (stage2.resolution, stage3.resolution, stage4.resolution) == (size // 8, size // 16, size // 32)
    assert stage2.window == size // 32 and stage3.window == size // 16 and stage4.window == size // 32
    assert spec.module(spec.example_inputs[0]).shape == (1, 1000)


def test_mobilesam_style_last_merge_keeps_stage_4_at_one_sixteenth():
    spec = create_model("tinyvit_5m", last_merge_stride=1)
    assert spec.module.stages[3].blocks[0].resolution == 14


def to_cream_key(key: str) -> str:
    """Our (= timm's) key as the official microsoft/Cream code names it."""
    key = re.sub(r"^patch_embed\.conv1\.", "patch_embed.seq.0.", key)
    key = re.sub(r"^patch_embed\.conv2\.", "patch_embed.seq.2.", key)
    key = re.sub(r"\.conv\.weight$", ".c.weight", key)
    key = re.sub(r"^head\.norm\.", "norm_head.", key)
    key = re.sub(r"^head\.fc\.", "head.", key)
    m = re.match(r"^stages\.(\d+)\.downsample\.(.*)$", key)
    if m:
        return f"layers.{int(m[1]) - 1}.downsample.{m[2]}"
    return re.sub(r"^stages\.", "layers.", key)


@pytest.fixture
def source_model():
    return randomize(create_model("tinyvit_5m", **TINY).module)


@pytest.mark.parametrize("layout", ["ours", "cream", "old_head_name"])
def test_checkpoints_load_in_either_layout(tmp_path, source_model, layout):
    state = source_model.state_dict()
    if layout == "old_head_name":  # timm before its hub weights, and edgekit's own files before the rename
        state = {re.sub(r"^head\.norm\.", "head.norm_head.", k): v for k, v in state.items()}
        assert "head.norm_head.weight" in state
        payload = state
    elif layout == "cream":
        state = {to_cream_key(k): v for k, v in state.items()}
        assert any(k.startswith("layers.0.downsample.") for k in state)
        payload = {"model": state}  # the official files wrap the state dict
    else:
        payload = state
    torch.save(payload, tmp_path / "ckpt.pth")
    spec = prepare_model("tinyvit_5m", tmp_path / "ckpt.pth", **TINY)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(spec.module(x), source_model(x))


def test_shape_mismatch_names_the_checkpoint_key(tmp_path, source_model):
    state = {to_cream_key(k): v for k, v in source_model.state_dict().items()}
    torch.save(state, tmp_path / "ckpt.pth")
    wrong = {**TINY, "window_sizes": [3, 2, 2, 1]}  # stage 2's bias table no longer fits
    with pytest.raises(BundleError, match=r"stages\.1\.blocks\.0\.attn\.attention_biases \(in the file: layers\.1\."):
        prepare_model("tinyvit_5m", tmp_path / "ckpt.pth", **wrong)


def test_missing_key_is_named(tmp_path, source_model):
    state = source_model.state_dict()
    del state["head.fc.weight"]
    torch.save(state, tmp_path / "ckpt.pth")
    with pytest.raises(BundleError, match=r"missing 1 key\(s\), e.g. head\.fc\.weight"):
        prepare_model("tinyvit_5m", tmp_path / "ckpt.pth", **TINY)


TIMM_KEYS = json.loads((Path(__file__).parent / "fixtures" / "timm_tinyvit_keys.json").read_text())["models"]


@pytest.mark.parametrize("size", ["5m", "11m", "21m"])
def test_a_timm_state_dict_loads_key_for_key(tmp_path, size):
    # Exactly the keys and shapes of timm's own TinyViT (fixtures/make_timm_tinyvit_keys.py), not ours.
    g = torch.Generator().manual_seed(0)
    state = {
        key: torch.tensor(7) if key.endswith("num_batches_tracked") else torch.randn(shape, generator=g)
        for key, shape in TIMM_KEYS[size].items()
    }
    torch.save(state, tmp_path / "timm.pth")
    spec = prepare_model(f"tinyvit_{size}", tmp_path / "timm.pth")
    loaded = spec.module.state_dict()
    assert sorted(loaded) == sorted(state)
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value, msg=key)
