"""INT8 bundles on a device without torch: the legacy tflite-runtime wheel and ONNX Runtime, float32 in and out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit import runtimes
from tests.test_runtime_only import _run, runtime_env  # noqa: F401  (the fixture)

pytestmark = pytest.mark.runtime_env


@pytest.mark.parametrize("fmt, precision", [("tflite", "int8"), ("onnx", "int8"), ("tflite", "int8-dynamic")])
def test_int8_bundle_without_torch_matches_the_export_environment(runtime_env, int8, tmp_path, fmt, precision):  # noqa: F811
    from edgekit.data import load_dataset

    bundle = int8.get("cnn_small" if precision == "int8" else "vit_digits", fmt, precision).bundle_dir
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
