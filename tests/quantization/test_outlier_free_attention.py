"""Clipped softmax and gated attention (Quantizable Transformers): the functions, and that they export."""

from __future__ import annotations

import pytest
import torch

from edgekit.errors import ConfigError, UnsupportedOptionError
from edgekit.models import resolve_model
from edgekit.models.layers import Attention


def test_clipped_softmax_outputs_exact_zeros_and_stays_in_range():
    attn = Attention(16, 2, attention="clipped", clip_alpha=1.0)
    logits = torch.tensor([[[4.0, 0.0, 0.0, -4.0]]])
    probs = attn._probabilities(logits)
    plain = logits.softmax(-1)
    gamma = -1.0 / 4
    assert torch.allclose(probs, torch.clamp((1 - gamma) * plain + gamma, 0, 1))
    assert probs[0, 0, 3] == 0.0 and plain[0, 0, 3] > 0  # a small probability becomes exactly zero
    assert probs.min() >= 0 and probs.max() <= 1


def test_gate_uses_only_its_heads_slice_and_starts_half_open():
    torch.manual_seed(0)
    attn = Attention(8, 2, attention="gated")
    x = torch.randn(1, 3, 8)
    gates = attn._gate(x)  # (B*H, N, 1)
    assert gates.shape == (2, 3, 1)
    assert 0.25 < float(gates.mean()) < 0.5
    changed = x.clone()
    changed[..., 4:] += 5.0  # only head 1's slice
    after = attn._gate(changed)
    assert torch.equal(after[0], gates[0]) and not torch.allclose(after[1], gates[1])
    # a closed gate silences the head entirely: the block adds only the projection's bias
    with torch.no_grad():
        attn.gate_bias.fill_(-1e4)
        assert torch.allclose(attn(x), attn.proj.bias.expand(1, 3, 8))


def test_variants_train_and_refuse_bad_settings():
    for kind in ("clipped", "gated"):
        spec = resolve_model("vit_digits", depth=1, attention=kind)
        spec.module(spec.example_inputs[0]).sum().backward()
        q_grad = spec.module.blocks[0].attn.q.weight.grad
        assert q_grad is not None and q_grad.abs().sum() > 0  # gradients reach q through the variant
    with pytest.raises(ConfigError, match="softmax, clipped, gated"):
        resolve_model("vit_digits", attention="sparsemax")
    with pytest.raises(ConfigError, match="dim 30 % heads 4"):
        resolve_model("vit_tiny", img_size=32, patch_size=8, dim=30, heads=4, depth=1, attention="gated")


@pytest.mark.parametrize("kind", ["clipped", "gated"])
def test_variants_export_fully_delegated_and_verified(kind, tmp_path):
    from edgekit.exporters.pipeline import export

    result = export("vit_digits", format="pte", config={"depth": 1, "attention": kind}, out_dir=tmp_path / kind,
                    samples=3)  # fmt: skip
    assert result.passed
    assert result.manifest.to_json()["export"]["undelegated_op_count"] == 0
    assert result.manifest.to_json()["model"]["config"]["attention"] == kind


def test_split_refuses_attention_variants(tmp_path):
    from edgekit.splitter.devices import DeviceSpec
    from edgekit.splitter.edvit import plan_split

    device = DeviceSpec(name="a", address="127.0.0.1:1", memory_bytes=512 << 20, gflops=10.0, format="onnx")
    with pytest.raises(UnsupportedOptionError, match="attention"):
        plan_split("vit_digits", [device], tmp_path / "plan", config={"attention": "gated"})
