"""One runtime interface: input checks before native code, the same outputs from every form of input."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit import runtimes
from edgekit.errors import InputError

FORMATS = ["pte", "tflite", "onnx"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_input_forms_agree(bundles, fmt):
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    with runtimes.load(bundles.path("vit_digits", fmt)) as rt:
        by_name = rt.run({"image": x})["logits"]
        by_list = rt.run([x])["logits"]
        by_array = rt.run(x)["logits"]
        again = rt.run(x)["logits"]
    np.testing.assert_array_equal(by_name, by_list)
    np.testing.assert_array_equal(by_name, by_array)
    np.testing.assert_array_equal(by_name, again)  # outputs are copies, not views the next call overwrites


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "bad, message",
    [
        ({"image": np.zeros((1, 1, 9, 8), np.float32)}, "expected shape"),
        ({"image": np.zeros((1, 1, 8, 8), np.float64)}, "expected dtype float32"),
        ({"img": np.zeros((1, 1, 8, 8), np.float32)}, "unknown input"),
        ({}, "missing input"),
        ([np.zeros((1, 1, 8, 8), np.float32)] * 2, "expects 1"),
        ({"image": [[1.0]]}, "numpy array"),
    ],
)
def test_bad_inputs_are_caught_before_native_code(bundles, fmt, bad, message):
    with runtimes.load(bundles.path("vit_digits", fmt)) as rt:
        with pytest.raises(InputError, match=message):
            rt.run(bad)


@pytest.mark.parametrize("fmt, filename", [("pte", "model.pte"), ("tflite", "model.tflite"), ("onnx", "model.onnx")])
def test_bare_model_file_loads_with_specs_from_the_file(bundles, fmt, filename):
    path = bundles.path("cnn_small", fmt)
    with runtimes.load(path / filename) as bare, runtimes.load(path) as full:
        assert bare.input_specs[0].shape == (1, 1, 8, 8)
        assert bare.input_specs[0].dtype == "float32"
        assert bare.output_specs[0].shape == (1, 10)
        x = np.ones((1, 1, 8, 8), np.float32)
        np.testing.assert_allclose(bare.run([x])[bare.output_specs[0].name], full.run([x])["logits"], rtol=0, atol=0)


def test_multi_graph_loader_names_the_graph(bundles):
    graphs = runtimes.load_bundle_graphs(bundles.path("cnn_small", "onnx"))
    assert list(graphs) == ["forward"]
