"""SLAB: simplified linear attention matches its definition; PRepBN follows its schedule and folds away."""

from __future__ import annotations

import torch

from edgekit.models import create_model
from edgekit.models.slab import PRepBN, SimplifiedLinearAttention
from edgekit.training import train_classifier
from edgekit.transforms.reparam import fold_norms
from tests.conftest import TINY_CONFIGS
from tests.helpers.norms import randomize_norms


def reference_sla(attn: SimplifiedLinearAttention, x: torch.Tensor) -> torch.Tensor:
    """Per head: out_i = q_i (sum_j k_j^T v_j) / (q_i . sum_j k_j + N eps) + DWC(V), with explicit einsums."""
    b, n, c = x.shape
    h, d = attn.heads, attn.head_dim
    q, k, v = attn.qkv(x).split(c, dim=-1)
    q, k = torch.relu(q), torch.relu(k + attn.pos)
    q, k, v = (t.reshape(b, n, h, d) for t in (q, k, v))
    kv = torch.einsum("bjhd,bjhe->bhde", k, v)  # sum over tokens j
    k_sum = k.sum(dim=1)  # (b, h, d)
    num = torch.einsum("bihd,bhde->bihe", q, kv)
    den = torch.einsum("bihd,bhd->bih", q, k_sum).unsqueeze(-1) + n * attn.eps
    out = num / den
    grid = v.permute(0, 2, 3, 1).reshape(b * h, d, attn.grid, attn.grid)
    local = attn.dwc(grid).reshape(b, h, d, n).permute(0, 3, 1, 2)
    return attn.proj((out + local).reshape(b, n, c))


def test_sla_matches_its_definition():
    torch.manual_seed(0)
    attn = SimplifiedLinearAttention(dim=12, heads=3, grid=4).eval()
    with torch.no_grad():
        attn.pos.normal_()
    x = torch.randn(2, 16, 12)
    torch.testing.assert_close(attn(x), reference_sla(attn, x), rtol=1e-4, atol=1e-5)


def test_prepbn_schedule_and_inference_form():
    norm = randomize_norms(PRepBN(6))
    x = torch.randn(4, 5, 6)
    norm.train()
    norm.lam.fill_(1.0)
    torch.testing.assert_close(norm(x), norm.ln(x))
    norm.lam.fill_(0.25)
    mixed = norm(x)
    norm.eval()  # inference: RepBN only, whatever lam is
    torch.testing.assert_close(norm(x), norm.repbn(x))
    assert not torch.allclose(mixed, norm(x))


def test_training_runs_the_schedule_to_repbn():
    spec = create_model("slab_deit_tiny", **{**TINY_CONFIGS["slab_deit_tiny"], "img_size": 8, "patch_size": 2,
                                             "in_chans": 1})  # fmt: skip
    module = spec.module
    module.on_train_step(0, 100)
    assert float(module.blocks[0].norm1.lam) == 1.0
    module.on_train_step(35, 100)  # halfway through the default 70% decay
    assert abs(float(module.blocks[0].norm1.lam) - 0.5) < 1e-6
    train_classifier(spec, "digits", epochs=1)
    assert all(float(m.lam) == 0.0 for m in module.modules() if isinstance(m, PRepBN))


def test_slab_folds_to_no_norm_at_all():
    spec = create_model("slab_deit_tiny", **TINY_CONFIGS["slab_deit_tiny"])
    module = randomize_norms(spec.module)
    folded, report = fold_norms(module)
    depth = TINY_CONFIGS["slab_deit_tiny"]["depth"]
    # norm1 -> attn.qkv and norm2 -> mlp.fc1 fold into the Linear; the final norm feeds a reshape.
    assert report.folded == {"repbn+linear": 2 * depth, "repbn->affine": 1}
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(folded(x), module(x), rtol=1e-5, atol=1e-5)
    program = torch.export.export(folded, (x[:1],))
    names = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("batch_norm" in n or "layer_norm" in n for n in names)
