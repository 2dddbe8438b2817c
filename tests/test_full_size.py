"""Full-size models (slow: `make test-slow`): the headline command of the README, end to end."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgekit.bundle import MANIFEST_NAME
from edgekit.cli import cli

pytestmark = pytest.mark.slow


def test_vit_tiny_for_android_end_to_end(tmp_path):
    out = tmp_path / "vit_tiny-android"
    runner = CliRunner()
    result = runner.invoke(cli, ["export", "vit_tiny", "--target", "android", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["format"] == "pte" and manifest["delegate"] == "xnnpack"
    assert manifest["validation"]["passed"] and manifest["export"]["undelegated_op_count"] == 0
    assert manifest["model"]["parameters"] == 5_717_416
    result = runner.invoke(cli, ["run", str(out), "--random", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["outputs"]["logits"]["shape"] == [1, 1000]


@pytest.mark.parametrize("args", [["--target", "android"], ["--format", "tflite"], ["--format", "onnx"]])
def test_tinyvit_5m_exports_verified_and_folded(tmp_path, args):
    out = tmp_path / "tv"
    result = CliRunner().invoke(cli, ["export", "tinyvit_5m", *args, "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["validation"]["passed"] and manifest["transforms"]["norms_left"] == 0
    assert manifest["transforms"]["fold_norms"]["folded"] == {
        "conv+bn": 27
    }  # stem 2, MBConv 6, merges 9, local convs 10
    if manifest["format"] == "pte":
        assert manifest["export"]["undelegated_op_count"] == 0
