"""Every built-in model through every format, through the one shared round-trip helper."""

from __future__ import annotations

import pytest

from edgekit.formats import FORMATS
from edgekit.models import list_models
from tests.conftest import TINY_CONFIGS
from tests.roundtrip import assert_roundtrip

MODELS = list_models()
FORMAT_NAMES = FORMATS.names()
# Larger presets of an architecture whose tiny configuration is the same as its smallest preset's: exporting
# them again by default would test nothing new, so they run with the slow tests.
SIZE_VARIANTS = {"seq2seq_30m", "seq2seq_330m", "seq2seq_30m_twin", "seq2seq_330m_twin"}
# Exports that take over a minute here, covered by a faster format of the same model in the default run: the
# decoder-only twin's prefill writes its cache token by token, and XNNPACK lowering grows with the unrolled graph.
# The checkpoint families (t5, bart) are exported from transformers checkpoints in every format by
# tests/generation/test_checkpoints.py (T5 by default, BART's .onnx by default): their random-weight round trips
# add nothing by default.
SLOW_EXPORTS = {("seq2seq_tiny_twin", "pte"), *((m, f) for m in ("t5", "bart") for f in FORMATS.names())}


CASES = [
    pytest.param(m, f, marks=pytest.mark.slow) if m in SIZE_VARIANTS or (m, f) in SLOW_EXPORTS else (m, f)
    for m in MODELS
    for f in FORMAT_NAMES
]


@pytest.mark.parametrize(("model", "fmt"), CASES)
def test_roundtrip(bundles, model, fmt):
    manifest = assert_roundtrip(bundles.path(model, fmt), model, TINY_CONFIGS[model])
    assert manifest["format"] == fmt
    assert manifest["model"]["name"] == model
    for entry in manifest["files"].values():
        assert len(entry["sha256"]) == 64 and entry["bytes"] > 0
    assert manifest["transforms"]["norms_left"] == 0  # every BatchNorm / RepBN folded away
    if fmt == "pte":
        # Built-in models are written so that XNNPACK takes every op (models/layers.py says how), except the
        # token-embedding lookup of language models: XNNPACK has no gather.
        allowed = {"aten.embedding"} if manifest["model"]["task"] == "seq2seq" else set()
        assert set(manifest["export"]["undelegated_ops"]) <= allowed, manifest["export"]["undelegated_ops"]
    if fmt == "onnx":  # weights in a side file; a file pair per graph
        stems = [g["name"] for g in manifest["graphs"]] if len(manifest["graphs"]) > 1 else ["model"]
        assert {f"{stem}.onnx{suffix}" for stem in stems for suffix in ("", ".data")} <= set(manifest["files"])


def test_every_model_has_a_tiny_config():
    assert sorted(TINY_CONFIGS) == MODELS, "add a tiny configuration for new models to tests/conftest.py"


def test_every_format_has_an_exporter_and_a_runtime():
    for name, fmt in FORMATS.items():
        exporter = fmt.exporter_class()
        assert exporter.format == name
        assert fmt.runtime_class().name


def test_portable_delegate_leaves_ops_undelegated(bundles, tmp_path):
    # The same model without XNNPACK: the report must count the kernels left on the portable runtime.
    from edgekit.exporters.pipeline import export

    result = export(
        "cnn_small",
        format="pte",
        delegate="portable",
        out_dir=tmp_path / "b",
        config=TINY_CONFIGS["cnn_small"],
        samples=2,
    )
    ops = result.manifest.to_json()["export"]["undelegated_ops"]
    assert result.passed
    assert ops and sum(ops.values()) > 5
    assert any("convolution" in name for name in ops)
