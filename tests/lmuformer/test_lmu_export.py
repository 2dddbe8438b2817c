"""Whole-sequence and streaming bundles of trained tiny LMUFormers in every format, checked against torch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from edgekit.bundle import read_bundle
from edgekit.data import load_dataset
from edgekit.errors import BundleError, InputError, UnsupportedOptionError
from edgekit.evaluation import evaluate_bundle, model_step_predictions
from edgekit.exporters.verify_stream import reference_steps, stream_sequence
from edgekit.formats import FORMATS
from edgekit.models import prepare_model
from edgekit.streaming import StreamSession
from edgekit.validate import compare_spikes

MODELS = ("lmuformer", "lmuformer_spiking")
FORMAT_NAMES = FORMATS.names()


def _digits(n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    split = load_dataset("digits", (1, 16, 4))
    return split.x_test[:n], split.y_test[:n]


def test_trained_models_learn(lmu):
    # 4 epochs on the 1,438 training digits; chance is 10%
    assert lmu.accuracy("lmuformer") > 0.6
    assert lmu.accuracy("lmuformer_spiking") > 0.3


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("model", MODELS)
def test_streaming_bundle_matches_whole_sequence_at_every_frame(lmu, model, fmt):
    result = lmu.get(model, fmt)
    manifest = result.manifest.to_json()
    assert result.passed, result.validation.summary()
    stream = manifest["extras"]["stream"]
    assert stream["chunk"] == 1 and stream["features"] == 4 and stream["initial_state"] == "zeros"
    kinds = {s["kind"] for s in stream["state"]}
    assert ("lif_membrane" in kinds) == (model == "lmuformer_spiking")
    assert manifest["transforms"]["norms_left"] == 0  # BatchNorms folded in the step graph too
    if fmt == "pte":
        assert manifest["export"]["undelegated_ops"] == {}, manifest["export"]["undelegated_ops"]
    # Independently of the exporter's check: real digits, every frame, against the whole-sequence torch model.
    whole = prepare_model(model, lmu.weights(model))
    sequences, _ = _digits()
    worst, flips, identical = 0.0, 0, 0
    with StreamSession(result.bundle_dir) as session:
        for sequence in sequences:
            want, want_spikes, potentials = reference_steps(whole, sequence[None])
            got, got_spikes = stream_sequence(session, sequence[None])
            steps = len(want)
            if want_spikes is not None:
                agreement = compare_spikes(want_spikes, got_spikes, potentials, 1.0, 1e-4)
                assert agreement.explained, f"spike flip away from the threshold at frame {agreement.compared_steps}"
                flips += agreement.flipped > 0
                identical += agreement.flipped == 0
                steps = agreement.compared_steps
            worst = max(worst, float(np.abs(want[:steps] - got[:steps]).max(initial=0.0)))
    assert worst <= 1e-4
    if model == "lmuformer_spiking":
        assert identical >= len(sequences) - 1, f"{flips} near-threshold flips in {len(sequences)} sequences"
        spikes = next(p for p in manifest["validation"]["per_output"] if p["name"] == "spikes")
        assert spikes["passed"] and spikes["unexplained_flips"] == 0


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_trained_spiking_model_fires_in_the_bundle(lmu, fmt):
    sequences, _ = _digits(8)
    with StreamSession(lmu.path("lmuformer_spiking", fmt)) as session:
        rates = [stream_sequence(session, s[None])[1].mean() for s in sequences]
    assert 0.005 < float(np.mean(rates)) < 0.9


# The untrained whole-sequence exports to every format are in tests/test_roundtrip.py; the trained spiking model's
# take 20-90 s each to lower here (every LIF unrolled over 16 frames), so they run with the slow tests.
@pytest.mark.parametrize(
    ("model", "fmt"),
    [("lmuformer", f) for f in FORMAT_NAMES]
    + [pytest.param("lmuformer_spiking", f, marks=pytest.mark.slow) for f in FORMAT_NAMES],
)
def test_whole_sequence_export_of_trained_model(lmu, model, fmt):
    result = lmu.get(model, fmt, streaming=False)
    assert result.passed and "stream" not in result.manifest.to_json()["extras"]
    assert result.manifest.to_json()["graphs"][0]["inputs"][0]["shape"] == [1, 16, 4]
    if fmt == "pte":
        assert result.manifest.to_json()["export"]["undelegated_ops"] == {}
    # the bundle classifies the held-out digits as the trained model does
    spec = prepare_model(model, lmu.weights(model))
    split = load_dataset("digits", (1, 16, 4))
    with torch.no_grad():
        want = spec.module(torch.from_numpy(split.x_test)).argmax(-1).numpy()
    assert evaluate_bundle(result.bundle_dir).accuracy == pytest.approx(
        float(np.mean(want == split.y_test)), abs=1 / 359
    )


def test_streamed_accuracy_equals_torch(lmu):
    # `edgekit eval` on a streaming bundle feeds every held-out digit frame by frame
    bundle = lmu.path("lmuformer", "onnx")
    result = evaluate_bundle(bundle)
    spec = prepare_model("lmuformer", lmu.weights("lmuformer"))
    split = load_dataset("digits", (1, 16, 4))
    torch_accuracy = float(np.mean(model_step_predictions(spec, split)[:, -1].argmax(-1) == split.y_test))
    assert result.samples == 359 and "streamed" in result.runner
    assert abs(result.accuracy - torch_accuracy) < 1e-9


def test_chunked_streaming(lmu):
    result = lmu.get("lmuformer_spiking", "onnx", chunk=4)
    assert result.passed and result.manifest.to_json()["extras"]["stream"]["chunk"] == 4
    sequences, _ = _digits(4)
    whole = prepare_model("lmuformer_spiking", lmu.weights("lmuformer_spiking"))
    with StreamSession(result.bundle_dir) as session:
        for sequence in sequences:
            want, _, _ = reference_steps(whole, sequence[None])
            np.testing.assert_allclose(session.run(sequence), want, atol=1e-4)
            session.reset()
        with pytest.raises(InputError, match="4 frame"):
            session.push(sequences[0][:3])


def test_session_checks_frames_and_resets(lmu):
    with StreamSession(lmu.path("lmuformer", "tflite")) as session:
        with pytest.raises(InputError, match="1 frame"):
            session.push(np.zeros(5, dtype=np.float32))
        with pytest.raises(InputError, match="floating point"):
            session.push(np.zeros(4, dtype=np.int64))
        sequence = _digits(1)[0][0]
        first = session.run(sequence)
        second = session.run(sequence)  # continues from the state: not the same as a fresh start
        assert not np.allclose(first, second)
        session.reset()
        np.testing.assert_allclose(session.run(sequence), first, atol=1e-6)
        assert session.frames_seen == 16


def test_state_layout_that_disagrees_with_the_graph_is_refused(lmu, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(lmu.path("lmuformer", "onnx"), bundle)
    manifest_path = bundle / "edgekit.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["extras"]["stream"]["state"][0]["shape"][-1] += 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="disagree"):
        StreamSession(bundle)
    del manifest["extras"]["stream"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not a streaming bundle"):
        StreamSession(bundle)


def test_streaming_int8_is_refused():
    from edgekit.exporters.pipeline import export

    with pytest.raises(UnsupportedOptionError, match="fp32"):
        export("lmuformer", format="onnx", precision="int8", streaming=True, config={"dim": 16, "order": 8})


def test_bundle_state_is_explicit_in_the_graph(lmu):
    bundle = read_bundle(lmu.path("lmuformer_spiking", "pte"))
    graph = bundle.graph()
    stream = bundle.manifest.to_json()["extras"]["stream"]
    assert [t.name for t in graph.inputs] == ["frames", *(s["name"] for s in stream["state"])]
    outputs = [t.name for t in graph.outputs]
    assert outputs[:2] == ["logits", "spikes"] and outputs[2:] == [s["output"] for s in stream["state"]]
    # the spikes output carries every LIF neuron of one frame
    spec = prepare_model("lmuformer_spiking", None, dim=16, order=8, depth=1, mlp_ratio=2)
    lifs = [m for m in spec.module.modules() if type(m).__name__ == "Neuron" and m.lif is not None]
    assert graph.outputs[1].shape == (1, sum(m.channels for m in lifs), 1)
