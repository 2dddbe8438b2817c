"""Bundles run on a device without torch: a separate virtual environment with only the runtimes.

The environment mirrors a Raspberry Pi with Python 3.11: edgekit's base install (numpy, click,
rich), ONNX Runtime and the legacy tflite-runtime wheel, which needs numpy<2 and so can never
share an environment with torch/ExecuTorch. It is built once into .venv-runtime and reused.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgekit.models import prepare_model
from tests.conftest import TINY_CONFIGS
from tests.helpers.runtime_env import _run

pytestmark = pytest.mark.runtime_env


def test_environment_has_no_torch(runtime_env):
    proc = _run(
        runtime_env, "-c", "import importlib.util as u, numpy; print(u.find_spec('torch') is None, numpy.__version__)"
    )
    assert proc.returncode == 0, proc.stderr
    no_torch, numpy_version = proc.stdout.split()
    assert no_torch == "True" and numpy_version.startswith("1.")
    proc = _run(
        runtime_env,
        "-c",
        "import sys, edgekit, edgekit.bundle, edgekit.runtimes, edgekit.cli; "
        "import edgekit.runtimes.onnxruntime, edgekit.runtimes.litert; print('torch' in sys.modules)",
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


@pytest.mark.parametrize("model", ["vit_digits", "cnn_small"])
@pytest.mark.parametrize("fmt, backend", [("onnx", None), ("tflite", "tflite_runtime")])
def test_bundles_run_without_torch(runtime_env, bundles, tmp_path, model, fmt, backend):
    spec = prepare_model(model, **TINY_CONFIGS[model])
    x = np.random.default_rng(7).standard_normal(spec.input_specs[0].shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = _run(
        runtime_env, "-m", "edgekit.cli", "run", str(bundles.path(model, fmt)), "-i", str(tmp_path / "x.npy"), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["backend"] == backend
    got = np.array(payload["outputs"]["logits"]["values"], dtype=np.float32)
    with torch.no_grad():
        want = spec.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_tampered_bundle_is_refused_without_torch_too(runtime_env, bundles, tmp_path):
    bundle = bundles.copy("cnn_small", "tflite", tmp_path)
    data = bytearray((bundle / "model.tflite").read_bytes())
    data[200] ^= 0xFF
    (bundle / "model.tflite").write_bytes(bytes(data))
    proc = _run(runtime_env, "-m", "edgekit.cli", "run", str(bundle), "--random")
    assert proc.returncode == 2
    assert "sha256" in proc.stderr and "Traceback" not in proc.stderr


def test_pte_bundle_names_the_missing_extra(runtime_env, bundles):
    proc = _run(runtime_env, "-m", "edgekit.cli", "run", str(bundles.path("cnn_small", "pte")), "--random")
    assert proc.returncode == 2
    assert "pip install 'edgekit-sdk[executorch]'" in proc.stderr


def test_profile_runs_without_torch(runtime_env, bundles, tmp_path):
    out = tmp_path / "p.json"
    proc = _run(runtime_env, "-m", "edgekit.cli", "profile", str(bundles.path("vit_digits", "tflite")), "--runs", "30",
                "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert len(data["samples_ms"]) == 30 and data["energy"]["source"] in ("estimate", "rapl", "hwmon", "pi5-pmic")


@pytest.mark.parametrize("fmt, backend", [("onnx", None), ("tflite", "tflite_runtime")])
def test_streaming_bundle_streams_without_torch(runtime_env, lmu, tmp_path, fmt, backend):
    # `edgekit stream` on a device: tflite-runtime 2.14 / ONNX Runtime, numpy<2, no torch
    from edgekit.data import load_dataset
    from edgekit.streaming import StreamSession

    bundle = lmu.path("lmuformer_spiking", fmt)
    sequence = load_dataset("digits", (1, 16, 4)).x_test[3]
    np.save(tmp_path / "seq.npy", sequence)
    proc = _run(runtime_env, "-m", "edgekit.cli", "stream", str(bundle), "-i", str(tmp_path / "seq.npy"), "--json")
    assert proc.returncode == 0, proc.stderr
    calls = [json.loads(line) for line in proc.stdout.splitlines()]
    with StreamSession(bundle) as session:
        want = session.run(sequence)
    assert len(calls) == 16
    assert [c["prediction"] for c in calls] == [str(int(row.argmax())) for row in want]


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_checkpoint_bundle_generates_without_torch(runtime_env, checkpoints, fmt):
    # a T5 checkpoint's bundle with its tokenizer.json: the device needs the runtime and `tokenizers`, not torch
    from edgekit.generation.bundle_runner import BundleSeq2SeqRunner
    from edgekit.generation.sampling import generate

    bundle = checkpoints.path("t5", fmt)
    with BundleSeq2SeqRunner(bundle) as runner:
        want = generate(runner, "the red cat sat", 8)
    proc = _run(runtime_env, "-m", "edgekit.cli", "generate", str(bundle), "--prompt", "the red cat sat", "-n", "8")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == want.text.strip() and want.tokens
