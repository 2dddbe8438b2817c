"""Training on real data (scikit-learn's digits) and the weights file format."""

from __future__ import annotations

import pytest
import torch

from edgekit.errors import BundleError
from edgekit.evaluation import evaluate_bundle, evaluate_model
from edgekit.exporters.pipeline import export
from edgekit.models import create_model, prepare_model
from edgekit.training import read_weights, save_weights, train_classifier


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory):
    spec = create_model("cnn_small", widths=[8, 16])
    result = train_classifier(spec, "digits", epochs=10)
    path = save_weights(tmp_path_factory.mktemp("w") / "cnn.pt", spec, {"test_accuracy": result.test_accuracy})
    return spec, result, path


def test_training_learns_digits(trained_cnn):
    _, result, _ = trained_cnn
    # 10 classes: chance is 10%; a working trainer reaches >90% in ten epochs on this CNN.
    assert result.test_accuracy > 0.9, result.history
    assert result.history[-1][1] < result.history[0][1]  # loss went down


def test_weights_round_trip_with_config(trained_cnn):
    spec, result, path = trained_cnn
    state, meta = read_weights(path)
    assert meta["model"] == "cnn_small" and meta["config"]["widths"] == [8, 16]
    rebuilt = prepare_model("cnn_small", path)  # config comes from the file
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(rebuilt.module(x), spec.module(x))
    assert evaluate_model("cnn_small", weights=path).accuracy == pytest.approx(result.test_accuracy)


def test_exported_bundle_keeps_the_accuracy(trained_cnn, tmp_path):
    _, result, path = trained_cnn
    bundle = export("cnn_small", format="tflite", weights=path, out_dir=tmp_path / "b", samples=2)
    assert evaluate_bundle(bundle.bundle_dir).accuracy == pytest.approx(result.test_accuracy, abs=1 / 359)


def test_shape_mismatch_names_the_key(trained_cnn):
    _, _, path = trained_cnn
    with pytest.raises(BundleError, match=r"features\.0\.0\.weight has shape .* expects"):
        prepare_model("cnn_small", path, widths=[4, 16])


class Payload:
    """Any class: unpickling it would run import machinery a weights file must never trigger."""


def test_pickled_code_in_a_weights_file_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload()}, path)
    with pytest.raises(BundleError, match="cannot read weights"):
        read_weights(path)


def test_bare_state_dict_loads(tmp_path):
    spec = create_model("vit_digits", depth=1)
    torch.save(spec.module.state_dict(), tmp_path / "sd.pt")
    rebuilt = prepare_model("vit_digits", tmp_path / "sd.pt", depth=1)
    x = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(rebuilt.module(x), spec.module(x))


def test_training_is_bit_identical_run_to_run():
    """Same seed, same thread count, same CPU: the same weights to the last bit (the README's figures rely on it)."""
    states = []
    for _ in range(2):
        spec = create_model("cnn_small", widths=[4, 8])
        result = train_classifier(spec, "digits", epochs=1, seed=3)
        states.append({k: v.clone() for k, v in spec.module.state_dict().items()})
    assert result.threads == torch.get_num_threads()
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    changed = create_model("cnn_small", widths=[4, 8])
    train_classifier(changed, "digits", epochs=1, seed=4)
    assert not all(
        torch.equal(states[0][k], v) for k, v in changed.module.state_dict().items() if v.is_floating_point()
    )
