"""The registry, user factories and the built-in datasets."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from edgekit.data import load_dataset
from edgekit.errors import UnknownNameError
from edgekit.exporters.pipeline import export
from edgekit.models import create_model, list_models, resolve_model
from tests.roundtrip import assert_roundtrip


def test_list_models_filters_by_pattern():
    assert list_models("vit*") == ["vit_digits", "vit_tiny"]
    assert "cnn_small" in list_models()


def test_unknown_name_lists_suggestions():
    with pytest.raises(UnknownNameError) as info:
        create_model("cnn_smal")
    assert info.value.suggestions == ["cnn_small"]


def test_vit_tiny_is_vit_ti_16():
    spec = create_model("vit_tiny")
    assert spec.input_specs[0].shape == (1, 3, 224, 224)
    assert 5.6e6 < spec.parameters < 5.8e6  # DeiT-Ti: 5.7M


def test_layer_norm_matches_torch():
    from edgekit.models.layers import LayerNorm

    ours = LayerNorm(48)
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
    ref = torch.nn.LayerNorm(48, eps=ours.eps)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 7, 48) * 3 + 1
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


USER_FILE = textwrap.dedent(
    """
    import torch

    def factory(width: int = 6):
        net = torch.nn.Sequential(torch.nn.Linear(5, width), torch.nn.ReLU(), torch.nn.Linear(width, 3))
        return net, (torch.randn(1, 5),)
    """
)


def test_user_factory_from_a_file_exports(tmp_path):
    path = tmp_path / "mymodel.py"
    path.write_text(USER_FILE)
    ref = f"{path}:factory"
    spec = resolve_model(ref, width=4)
    assert spec.input_names == ("input",) and spec.output_names == ("output",)
    result = export(ref, format="onnx", out_dir=tmp_path / "b", config={"width": 4}, samples=3)
    assert result.passed
    assert result.manifest.to_json()["model"]["family"] == "user"


def test_user_factory_from_an_importable_module(tmp_path, monkeypatch):
    package = tmp_path / "zoo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(USER_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = resolve_model("zoo.nets:factory")
    assert spec.module(torch.randn(1, 5)).shape == (1, 3)


def test_digits_split_is_fixed_and_adapts_to_the_input():
    a = load_dataset("digits", (1, 1, 8, 8))
    b = load_dataset("digits", (1, 1, 8, 8))
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert len(a.x_train) + len(a.x_test) == 1797 and len(a.x_test) == 359
    assert a.x_train.dtype == np.float32 and -1.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    big = load_dataset("digits", (1, 3, 32, 32))
    assert big.x_test.shape == (359, 3, 32, 32)
    # Bilinear upsampling keeps the mean brightness of each image (within interpolation error).
    np.testing.assert_allclose(big.x_test.mean(axis=(1, 2, 3)), a.x_test.mean(axis=(1, 2, 3)), atol=0.05)
    seq = load_dataset("digits", (1, 8, 8))
    np.testing.assert_array_equal(seq.x_test, a.x_test[:, 0])  # rows as frames
    assert load_dataset("digits", (1, 64, 1)).x_test.shape == (359, 64, 1)


def test_exports_are_checked_on_several_inputs(bundles):
    manifest = assert_roundtrip(bundles.path("vit_digits", "onnx"), "vit_digits", {"depth": 2})
    assert manifest["validation"]["samples"] == 4
