"""Every fold is exact on random BatchNorm statistics (not the identity statistics of a fresh BN)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekit.models import create_model, list_models
from edgekit.transforms.reparam import NORM_TYPES, Affine, RepBN, fold_norms
from tests.conftest import TINY_CONFIGS
from tests.helpers.norms import randomize_norms


def assert_exact(module: nn.Module, x: torch.Tensor, expected: dict[str, int]):
    module = randomize_norms(module)
    folded, report = fold_norms(module)
    assert report.folded == expected
    assert not any(isinstance(m, (nn.modules.batchnorm._BatchNorm, RepBN)) for m in folded.modules())
    with torch.no_grad():
        want, got = module(x), folded(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    return folded


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),
            nn.BatchNorm2d(8),
        )

    def forward(self, x):
        return self.body(x)


def test_conv_bn():
    assert_exact(ConvBN(), torch.randn(2, 3, 10, 10), {"conv+bn": 2})


def test_conv1d_bn_and_linear_bn():
    net = nn.Sequential(nn.Conv1d(4, 6, 3), nn.BatchNorm1d(6), nn.Flatten(), nn.Linear(6 * 5, 7), nn.BatchNorm1d(7))
    assert_exact(net, torch.randn(3, 4, 7), {"conv+bn": 1, "linear+bn": 1})


def test_bn_before_unpadded_conv():
    net = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(5), nn.Conv2d(5, 4, 1))
    assert_exact(net, torch.randn(2, 5, 6, 6), {"bn+conv": 1})


def test_bn_before_padded_conv_is_not_folded_into_it():
    # Zero padding after the affine map differs from padding before it: the BN must become an Affine.
    net = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(5), nn.Conv2d(5, 4, 3, padding=1))
    folded = assert_exact(net, torch.randn(2, 5, 6, 6), {"bn->affine": 1})
    assert any(isinstance(m, Affine) for m in folded.modules())


class RepBNBlock(nn.Module):
    """A SLAB-style pre-norm token mixer: the norm's output feeds three projections."""

    def __init__(self, dim=12):
        super().__init__()
        self.norm = RepBN(dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.last = RepBN(dim)

    def forward(self, x):
        y = self.norm(x)
        return self.last(x + self.q(y) * torch.sigmoid(self.k(y)) + self.v(y))


def test_repbn_into_every_following_linear_and_standalone():
    folded = assert_exact(RepBNBlock(), torch.randn(2, 9, 12), {"repbn+linear": 1, "repbn->affine": 1})
    assert sum(isinstance(m, Affine) for m in folded.modules()) == 1


def test_repbn_equals_bn_plus_alpha_x():
    norm = randomize_norms(RepBN(6))
    x = torch.randn(2, 5, 6)
    expected = norm.bn(x.transpose(1, 2)).transpose(1, 2) + norm.alpha * x
    torch.testing.assert_close(norm(x), expected)


def test_original_model_is_untouched():
    net = randomize_norms(ConvBN())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fold_norms(net)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_models_without_norms_are_returned_as_is():
    net = nn.Linear(3, 3)
    folded, report = fold_norms(net)
    assert folded is net and report.total == 0


def test_untraceable_model_is_reported_not_broken():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(3)

        def forward(self, x):
            return self.bn(x) if x.sum() > 0 else x  # data-dependent control flow

    net = Branchy().eval()
    folded, report = fold_norms(net)
    assert folded is net and not report.traced and report.reason


@pytest.mark.parametrize("name, config", [("cnn_small", {"widths": [8, 16]})])
def test_builtin_models_fold_exactly(name, config):
    spec = create_model(name, **config)
    assert_exact(spec.module, spec.example_inputs[0].repeat(3, 1, 1, 1), {"conv+bn": 4})


def test_folded_graph_has_no_batch_norm_op():
    spec = create_model("cnn_small", widths=[8, 16])
    folded, _ = fold_norms(randomize_norms(spec.module))
    program = torch.export.export(folded, spec.example_inputs)
    ops = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert ops and not any("batch_norm" in op for op in ops)
    unfolded = torch.export.export(spec.module, spec.example_inputs)
    assert any("batch_norm" in str(n.target) for n in unfolded.graph.nodes)  # the check can see one


def test_export_folds_by_default_and_not_with_no_fold(bundles, tmp_path):
    from edgekit.exporters.pipeline import export

    manifest = bundles.get("cnn_small", "onnx").manifest.to_json()
    assert manifest["transforms"]["fold_norms"]["folded"] == {"conv+bn": 4}
    assert manifest["transforms"]["norms_left"] == 0
    kept = export("cnn_small", format="onnx", out_dir=tmp_path / "b", config={"widths": [8, 16]}, fold=False, samples=2)
    assert kept.passed and kept.manifest.to_json()["transforms"]["norms_left"] == 4


@pytest.mark.parametrize("name", list_models())
def test_folding_is_exact_on_every_builtin_model(name):
    spec = create_model(name, **TINY_CONFIGS[name])
    module = randomize_norms(spec.module)
    folded, report = fold_norms(module)
    assert report.traced, report.reason
    assert not any(isinstance(m, NORM_TYPES) for m in folded.modules())
    x = [torch.cat([t] * 3) for t in spec.example_inputs]
    with torch.no_grad():
        want, got = module(*x), folded(*x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
