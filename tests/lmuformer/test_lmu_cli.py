"""`edgekit export --streaming` and `edgekit stream` through the command line."""

from __future__ import annotations

import json

import numpy as np

from edgekit.data import load_dataset
from tests.helpers.cli import assert_user_error, invoke


def test_export_streaming_then_stream_a_digit(lmu, tmp_path):
    out = tmp_path / "bundle"
    weights = str(lmu.weights("lmuformer_spiking"))
    result = invoke("export", "lmuformer_spiking", "-w", weights, "-f", "onnx", "--streaming", "--samples", "2",
                    "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "streaming" in result.output and "near-threshold" in result.output
    split = load_dataset("digits", (1, 16, 4))
    sequence = tmp_path / "seq.npy"
    np.save(sequence, split.x_test[0])
    result = invoke("stream", str(out), "--input", str(sequence), "--json")
    assert result.exit_code == 0, result.output
    calls = [json.loads(line) for line in result.output.splitlines()]
    assert [c["frames"] for c in calls] == list(range(1, 17))
    assert all(0.0 <= c["spike_rate"] <= 1.0 for c in calls)
    table = invoke("stream", str(out), "--input", str(sequence), "--every", "4")
    assert table.exit_code == 0 and "spike rate" in table.output
    assert calls[-1]["prediction"] in table.output


def test_stream_errors_are_one_line(lmu, bundles, tmp_path):
    bundle = str(lmu.path("lmuformer", "onnx"))
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((16, 5), dtype=np.float32))
    assert_user_error(invoke("stream", bundle, "--input", str(wrong)), "(frames, 4)")
    ragged = tmp_path / "pickle.npy"
    np.save(ragged, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_user_error(invoke("stream", bundle, "--input", str(ragged)), "pickled")
    seq = tmp_path / "seq.npy"
    np.save(seq, np.zeros((16, 4), dtype=np.float32))
    assert_user_error(invoke("stream", str(bundles.path("cnn_small", "onnx")), "--input", str(seq)),
                      "not a streaming bundle")  # fmt: skip
    assert_user_error(invoke("export", "cnn_small", "--streaming", "-o", str(tmp_path / "x")), "lmuformer")


def test_train_and_evaluate_through_the_cli(tmp_path):
    weights = tmp_path / "lmu.pt"
    settings = ["--set", "dim=16", "--set", "order=8"]
    result = invoke("train", "lmuformer_spiking", "--epochs", "1", "-o", str(weights), *settings)
    assert result.exit_code == 0, result.output
    assert "held-out accuracy" in result.output and weights.is_file()
    result = invoke("eval", "lmuformer_spiking", "--weights", str(weights))
    assert result.exit_code == 0 and "359 held-out" in result.output
    listing = invoke("models", "lmu*")
    assert listing.exit_code == 0 and listing.output.count("--streaming") == 2
