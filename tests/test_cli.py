"""The CLI contract: commands, output, and one clear line with exit code 2 for every user error."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

from edgekit.bundle import MANIFEST_NAME
from tests.helpers.cli import assert_user_error, invoke


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and "0.1.0" in result.output


def test_models_lists_every_registered_model():
    from edgekit.models import list_models

    result = invoke("models")
    assert result.exit_code == 0
    for name in list_models():
        assert name in result.output
    assert "5.72M" in result.output  # vit_tiny's parameter count


def test_targets_and_doctor():
    result = invoke("targets")
    assert result.exit_code == 0 and "android" in result.output and "xnnpack" in result.output
    result = invoke("doctor")
    assert result.exit_code == 0 and "onnxruntime" in result.output and "executorch" in result.output


def test_export_run_and_eval_through_the_cli(tmp_path):
    out = tmp_path / "b"
    result = invoke(
        "export",
        "vit_tiny",
        "--format",
        "onnx",
        "-o",
        str(out),
        "--set",
        "img_size=32",
        "--set",
        "patch_size=8",
        "--set",
        "dim=32",
        "--set",
        "depth=1",
        "--set",
        "heads=2",
        "--samples",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert "passed" in result.output
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["validation"]["passed"] and manifest["validation"]["samples"] == 3
    assert manifest["model"]["config"]["depth"] == 1

    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = invoke("run", str(out), "--input", str(tmp_path / "x.npy"), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    logits = np.array(payload["outputs"]["logits"]["values"], dtype=np.float32)
    assert logits.shape == (1, 1000)
    assert payload["top"][0]["index"] == int(logits.argmax())


def test_export_default_directory_is_named_after_model_and_target(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("export", "cnn_small", "--target", "linux-x86_64", "--set", "widths=[4,8]", "--samples", "2")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "cnn_small-linux-x86_64" / MANIFEST_NAME).read_text())
    assert manifest["target"] == "linux-x86_64" and manifest["format"] == "onnx"


def test_no_fold_keeps_batchnorm(tmp_path):
    out = tmp_path / "b"
    result = invoke("export", "cnn_small", "-f", "onnx", "-o", str(out), "--set", "widths=[4,8]", "--no-fold",
                    "--samples", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    transforms = json.loads((out / MANIFEST_NAME).read_text())["transforms"]
    assert transforms["norms_left"] == 4 and "skipped" in transforms["fold_norms"]


def test_run_random_prints_top_classes(bundles):
    result = invoke("run", str(bundles.path("cnn_small", "tflite")), "--random")
    assert result.exit_code == 0, result.output
    assert "top classes" in result.output and "logits" in result.output


def test_eval_bundle_on_digits(bundles):
    result = invoke("eval", str(bundles.path("cnn_small", "onnx")))
    assert result.exit_code == 0, result.output
    assert "359 held-out digits samples" in result.output


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_model_suggests_a_close_match():
    assert_user_error(invoke("export", "vit_tiyn"), "unknown model 'vit_tiyn'", "Did you mean 'vit_tiny'")


def test_unknown_target_suggests_a_close_match():
    assert_user_error(invoke("export", "cnn_small", "--target", "andriod"), "unknown target", "'android'")


def test_unknown_format():
    assert_user_error(invoke("export", "cnn_small", "--format", "tflight"), "unknown format", "'tflite'")


def test_delegate_not_offered_by_format():
    assert_user_error(invoke("export", "cnn_small", "--format", "onnx", "--delegate", "xnnpack"), "--delegate")


def test_bad_config_value():
    assert_user_error(invoke("export", "cnn_small", "--set", "img_size=big"), "img_size", "int")
    assert_user_error(invoke("export", "cnn_small", "--set", "depthh=2"), "depthh")


def test_missing_optional_dependency_names_the_extra(bundles, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    result = invoke("run", str(bundles.path("cnn_small", "onnx")), "--random")
    assert_user_error(result, "onnxruntime", "pip install 'edgekit-sdk[onnx]'")


def test_missing_exporter_dependency_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    result = invoke("export", "cnn_small", "--format", "tflite", "-o", str(tmp_path / "b"))
    assert_user_error(result, "litert-torch", "edgekit-sdk[export]")
    assert not (tmp_path / "b").exists()


def test_tampered_bundle(bundles, tmp_path):
    bundle = bundles.copy("cnn_small", "pte", tmp_path)
    data = bytearray((bundle / "model.pte").read_bytes())
    data[-10] ^= 0x01
    (bundle / "model.pte").write_bytes(bytes(data))
    assert_user_error(invoke("run", str(bundle), "--random"), "model.pte", "sha256")


def test_truncated_bundle(bundles, tmp_path):
    bundle = bundles.copy("cnn_small", "tflite", tmp_path)
    path = bundle / "model.tflite"
    path.write_bytes(path.read_bytes()[:-1000])
    assert_user_error(invoke("run", str(bundle), "--random"), "truncated")


def test_truncated_bare_model_file(bundles, tmp_path):
    path = tmp_path / "model.pte"
    path.write_bytes((bundles.path("cnn_small", "pte") / "model.pte").read_bytes()[:4000])
    assert_user_error(invoke("run", str(path), "--random"), "could not load model.pte")


def test_wrong_input_shape_and_dtype(bundles, tmp_path):
    bundle = str(bundles.path("cnn_small", "onnx"))
    np.save(tmp_path / "shape.npy", np.zeros((1, 1, 16, 16), np.float32))
    np.save(tmp_path / "dtype.npy", np.zeros((1, 1, 8, 8), np.float64))
    assert_user_error(invoke("run", bundle, "-i", str(tmp_path / "shape.npy")), "expected shape [1, 1, 8, 8]")
    assert_user_error(invoke("run", bundle, "-i", str(tmp_path / "dtype.npy")), "expected dtype float32")


def test_pickled_input_is_never_loaded(bundles, tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_user_error(invoke("run", str(bundles.path("cnn_small", "onnx")), "-i", str(tmp_path / "obj.npy")), "pickled")


def test_unreadable_user_factories(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def factory(:\n")
    raising = tmp_path / "raising.py"
    raising.write_text("def factory():\n    raise RuntimeError('no weights here')\n")
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def factory():\n    return 42\n")
    assert_user_error(invoke("export", f"{tmp_path}/missing.py:factory"), "no such file")
    assert_user_error(invoke("export", f"{broken}:factory"), "SyntaxError")
    assert_user_error(invoke("export", f"{raising}:factory"), "no weights here")
    assert_user_error(invoke("export", f"{wrong}:factory"), "must return")
    assert_user_error(invoke("export", f"{raising}:nothing"), "no callable named 'nothing'")
    assert_user_error(invoke("export", "no_such_package_xyz.models:factory"), "cannot import")


def test_debug_shows_the_traceback():
    result = invoke("--debug", "export", "vit_tiyn")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


MISMATCH_FACTORY = textwrap.dedent(
    """
    import torch

    class Drifting(torch.nn.Module):
        # Python-side state: the export bakes one value in, eager keeps counting.
        def __init__(self):
            super().__init__()
            self.calls = 0
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            self.calls += 1
            return self.lin(x) + float(self.calls)

    def factory():
        return Drifting(), torch.randn(1, 4)
    """
)


def test_disagreement_fails_the_export_unless_allowed(tmp_path):
    source = tmp_path / "drift.py"
    source.write_text(MISMATCH_FACTORY)
    out = tmp_path / "b"
    result = invoke("export", f"{source}:factory", "--format", "onnx", "-o", str(out))
    assert_user_error(result, "disagrees with PyTorch", "--allow-mismatch", code=1)
    assert not out.exists()
    rejected = json.loads((tmp_path / "b.rejected" / MANIFEST_NAME).read_text())
    assert rejected["validation"]["passed"] is False

    result = invoke("export", f"{source}:factory", "--format", "onnx", "-o", str(out), "--allow-mismatch")
    assert result.exit_code == 0
    assert json.loads((out / MANIFEST_NAME).read_text())["validation"]["passed"] is False


SHAPE_FACTORY = textwrap.dedent(
    """
    import torch

    class Reshaped(torch.nn.Module):
        # The graph torch.export captures returns 3 outputs per row; eager PyTorch returns 2.
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            y = self.lin(x)
            return y if torch.compiler.is_exporting() else y[:, :2]

    def factory():
        return Reshaped(), torch.randn(1, 4)
    """
)


def test_a_shape_mismatch_fails_the_export_even_with_allow_mismatch(tmp_path):
    source = tmp_path / "shape.py"
    source.write_text(SHAPE_FACTORY)
    out = tmp_path / "b"
    result = invoke("export", f"{source}:factory", "--format", "onnx", "--no-fold", "-o", str(out), "--allow-mismatch")
    assert_user_error(result, "shape", "(1, 3)", "(1, 2)", code=1)
    assert not out.exists()


def test_export_never_overwrites_a_non_bundle_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert_user_error(invoke("export", "cnn_small", "-o", str(tmp_path / "mine")), "refusing to overwrite")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_real_process_exit_code_and_single_line(tmp_path):
    # The console script as users run it: exit code 2, one line on stderr, nothing on stdout.
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit.cli", "run", str(tmp_path / "nope"), "--random"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no bundle at" in proc.stderr
    assert proc.stdout == ""
