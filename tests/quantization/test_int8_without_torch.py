"""INT8 bundles on a device without torch: the legacy tflite-runtime wheel and ONNX Runtime, float32 in and out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit import runtimes
from tests.helpers.runtime_env import _run

pytestmark = pytest.mark.runtime_env


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_int8_bundle_without_torch_matches_the_export_environment(runtime_env, int8, tmp_path, fmt):  # noqa: F811
    from edgekit.data import load_dataset

    bundle = int8.get("cnn_small", fmt).bundle_dir
    with runtimes.load(bundle) as runtime:
        spec = runtime.input_specs[0]
        x = load_dataset("digits", spec.shape).x_test[:4]
        want = np.concatenate([runtime.run({spec.name: s[None]})[runtime.output_specs[0].name] for s in x])
    got = []
    for i, sample in enumerate(x):
        np.save(tmp_path / f"x{i}.npy", sample[None])
        proc = _run(runtime_env, "-m", "edgekit.cli", "run", bundle, "-i", str(tmp_path / f"x{i}.npy"), "--json")
        assert proc.returncode == 0, proc.stderr
        outputs = json.loads(proc.stdout)["outputs"]["logits"]
        assert outputs["dtype"] == "float32"
        got.append(np.array(outputs["values"], dtype=np.float32))
    got = np.concatenate(got)
    # the same integer program in another runtime build: equal up to a rounding step of the output
    assert np.array_equal(got.argmax(-1), want.argmax(-1))
    np.testing.assert_allclose(got, want, atol=0.05 * float(np.abs(want).max()))


def test_dynamic_int8_tflite_on_the_legacy_wheel_is_one_clear_error(runtime_env, int8, tmp_path):  # noqa: F811
    """litert-torch writes dynamic-INT8 fully connected layers as op version 12, which tflite-runtime 2.14
    predates: the device is told what to install, in one line."""
    bundle = int8.get("vit_digits", "tflite", "int8-dynamic").bundle_dir
    proc = _run(runtime_env, "-m", "edgekit.cli", "run", bundle, "--random")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "tflite_runtime is too old" in lines[0] and "ai-edge-litert" in lines[0], proc.stderr
