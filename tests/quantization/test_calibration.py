"""Calibration data: every accepted layout, and one clear line for every bad file."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from edgekit.calibration import load_calibration
from edgekit.errors import InputError
from edgekit.types import TensorSpec
from tests.helpers.cli import assert_user_error, invoke

IMAGE = (TensorSpec("image", (1, 1, 8, 8)),)


def test_layouts_with_and_without_the_batch_dim(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "flat.npy", rng.standard_normal((10, 1, 8, 8)))  # float64: converted
    np.save(tmp_path / "batched.npy", rng.standard_normal((10, 1, 1, 8, 8)).astype(np.float32))
    np.save(tmp_path / "one.npy", rng.standard_normal((1, 1, 8, 8)).astype(np.float32))
    for name, count in (("flat", 10), ("batched", 10)):
        calib = load_calibration(IMAGE, tmp_path / f"{name}.npy", None, limit=128)
        assert len(calib) == count and calib.samples[0]["image"].shape == (1, 1, 8, 8)
        assert calib.samples[0]["image"].dtype == np.float32
    assert len(load_calibration(IMAGE, tmp_path / "flat.npy", None, limit=4)) == 4
    # a folder: every file's samples, in name order
    assert len(load_calibration(IMAGE, tmp_path, None, limit=128)) == 21


def test_npz_by_input_name_or_x_train(tmp_path):
    x = np.ones((5, 1, 8, 8), np.float32)
    np.savez(tmp_path / "named.npz", image=x)
    np.savez(tmp_path / "dataset.npz", x_train=x, y_train=np.zeros(5), x_test=x, y_test=np.zeros(5))
    assert len(load_calibration(IMAGE, tmp_path / "named.npz", None)) == 5
    assert len(load_calibration(IMAGE, tmp_path / "dataset.npz", None)) == 5
    two = (TensorSpec("a", (1, 4)), TensorSpec("b", (1, 2)))
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 4)), b=np.zeros((3, 2)))
    calib = load_calibration(two, tmp_path / "two.npz", None)
    assert len(calib) == 3 and set(calib.samples[0]) == {"a", "b"}


def test_dataset_and_random_fallbacks():
    calib = load_calibration(IMAGE, None, "digits", limit=7)
    assert len(calib) == 7 and calib.source == "digits (training split)"
    assert -1.0 <= calib.samples[0]["image"].min() and calib.samples[0]["image"].max() <= 1.0
    calib = load_calibration(IMAGE, None, None, limit=3)
    assert len(calib) == 3 and calib.source.startswith("random normal")


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: np.save(p, np.zeros((4, 3, 8, 8), np.float32)), "has shape [4, 3, 8, 8]"),
        (lambda p: np.save(p, np.zeros((0, 1, 8, 8), np.float32)), "is empty"),
        (lambda p: np.save(p, np.full((2, 1, 8, 8), np.nan, np.float32)), "NaN"),
        (lambda p: np.save(p, np.array([["a"] * 64]).reshape(1, 1, 8, 8)), "expected numbers"),
        (lambda p: np.save(p, np.array([{"x": 1}], dtype=object), allow_pickle=True), "pickled"),
        (lambda p: p.write_bytes(b"not a numpy file"), "not a readable"),
    ],
    ids=["wrong-shape", "empty", "nan", "strings", "pickle", "garbage"],
)
def test_bad_files_are_one_clear_error(tmp_path, make, fragment):
    path = tmp_path / "calib.npy"
    make(path)
    with pytest.raises(InputError) as info:
        load_calibration(IMAGE, path, None)
    assert fragment in str(info.value)


def test_pickle_is_never_loaded(tmp_path):
    path = tmp_path / "calib.npy"
    path.write_bytes(pickle.dumps(np.zeros((1, 1, 8, 8))))
    with pytest.raises(InputError, match="not a readable"):
        load_calibration(IMAGE, path, None)


def test_empty_folder_and_wrong_npz_keys(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no .npy or .npz"):
        load_calibration(IMAGE, tmp_path / "empty", None)
    np.savez(tmp_path / "keys.npz", a=np.zeros((2, 1, 8, 8)), b=np.zeros((2, 1, 8, 8)))
    with pytest.raises(InputError, match="name them after the model's inputs"):
        load_calibration(IMAGE, tmp_path / "keys.npz", None)
    with pytest.raises(InputError, match="at least 1"):
        load_calibration(IMAGE, None, "digits", limit=0)


def test_cli_reports_a_bad_calibration_file_in_one_line(tmp_path):
    bad = tmp_path / "calib.npy"
    np.save(bad, np.zeros((4, 2, 8, 8), np.float32))
    result = invoke("export", "cnn_small", "-f", "onnx", "--int8", "--calib", str(bad), "-o", str(tmp_path / "b"))
    assert_user_error(result, "calibration data", "[4, 2, 8, 8]", "[1, 1, 8, 8]")
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 1, 8, 8), np.float32))
    result = invoke("export", "cnn_small", "-f", "onnx", "--int8", "--calib", str(empty), "-o", str(tmp_path / "b"))
    assert_user_error(result, "is empty")
    assert not (tmp_path / "b").exists()


def test_cli_int8_export_then_run_with_float_inputs(int8, tmp_path):
    weights = int8.weights("cnn_small")
    out = tmp_path / "b"
    result = invoke("export", "cnn_small", "-w", str(weights), "-f", "tflite", "--int8", "--calib-samples", "16",
                    "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "int8" in result.output and "16 samples from digits" in result.output and "accuracy" in result.output
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    result = invoke("run", str(out), "--input", str(tmp_path / "x.npy"), "--json")
    assert result.exit_code == 0, result.output
    outputs = json.loads(result.output)["outputs"]["logits"]
    assert outputs["dtype"] == "float32" and outputs["shape"] == [1, 10]
