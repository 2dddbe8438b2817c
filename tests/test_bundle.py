"""A bundle is trusted only after its manifest and every file hash check out."""

from __future__ import annotations

import json

import pytest

from edgekit import runtimes
from edgekit.bundle import MANIFEST_NAME, read_bundle
from edgekit.errors import BundleError


@pytest.fixture
def onnx_bundle(bundles, tmp_path):
    return bundles.copy("cnn_small", "onnx", tmp_path)


def _manifest(path):
    return json.loads((path / MANIFEST_NAME).read_text())


def test_manifest_has_the_documented_fields(bundles):
    m = read_bundle(bundles.path("vit_digits", "tflite")).manifest.to_json()
    for key in (
        "schema_version",
        "model",
        "format",
        "target",
        "precision",
        "graphs",
        "files",
        "validation",
        "toolchain",
    ):
        assert key in m
    graph = m["graphs"][0]
    assert graph["file"] == "model.tflite" and graph["inputs"][0]["shape"] == [1, 1, 8, 8]
    assert m["toolchain"]["torch"].startswith("2.13.0")
    assert set(m["validation"]) >= {"passed", "max_abs_err", "cosine", "top1_agreement", "tolerance"}


def test_tampered_file_is_rejected(onnx_bundle):
    data = bytearray((onnx_bundle / "model.onnx.data").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (onnx_bundle / "model.onnx.data").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        runtimes.load(onnx_bundle)


def test_truncated_file_is_rejected(onnx_bundle):
    path = onnx_bundle / "model.onnx"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError, match="truncated"):
        runtimes.load(onnx_bundle)


def test_missing_file_is_rejected(onnx_bundle):
    (onnx_bundle / "model.onnx.data").unlink()
    with pytest.raises(BundleError, match="missing"):
        runtimes.load(onnx_bundle)


def test_corrupt_manifest_is_rejected(onnx_bundle):
    (onnx_bundle / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match="corrupt"):
        read_bundle(onnx_bundle)


def test_unknown_schema_is_rejected(onnx_bundle):
    m = _manifest(onnx_bundle)
    m["schema_version"] = 99
    (onnx_bundle / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="schema 99"):
        read_bundle(onnx_bundle)


def test_manifest_cannot_point_outside_the_bundle(onnx_bundle, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    m = _manifest(onnx_bundle)
    m["files"]["../secret.txt"] = {"bytes": 1, "sha256": "0" * 64}
    (onnx_bundle / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="outside the bundle"):
        read_bundle(onnx_bundle)


def test_directory_without_manifest_is_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="missing"):
        read_bundle(tmp_path)


@pytest.mark.parametrize("fmt", ["pte", "tflite", "onnx"])
def test_corrupt_model_file_with_matching_hash_fails_cleanly(bundles, tmp_path, fmt):
    # Garbage that the manifest vouches for (re-hashed): the native loader must fail as a BundleError.
    from edgekit.bundle import describe_files

    bundle = bundles.copy("cnn_small", fmt, tmp_path)
    m = _manifest(bundle)
    model_file = bundle / m["graphs"][0]["file"]
    model_file.write_bytes(b"\x00garbage" * 64)
    m["files"] = {name: entry.to_json() for name, entry in describe_files(bundle, list(m["files"])).items()}
    (bundle / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="could not load"):
        runtimes.load(bundle)
