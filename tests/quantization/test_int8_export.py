"""INT8 exports in every format: judged on held-out accuracy, float32 at the interface, failures refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit import runtimes
from edgekit.bundle import MANIFEST_NAME
from edgekit.errors import UnsupportedOptionError, ValidationFailed
from edgekit.types import QualityGate

FORMATS = ("pte", "tflite", "onnx")
# tests of calibration pin a static ONNX recipe: the one chosen on a VNNI CPU quantizes activations per call
STATIC_ONNX = "onnx-avx2"


@pytest.mark.parametrize("fmt", FORMATS)
def test_static_int8_cnn_keeps_accuracy_and_records_it(int8, fmt):
    result = int8.get("cnn_small", fmt)
    manifest = json.loads((Path(result.bundle_dir) / MANIFEST_NAME).read_text())
    assert manifest["precision"] == "int8"
    quant = manifest["quantization"]
    # every recipe calibrates a CNN's convolutions (ONNX on VNNI quantizes only its GEMM inputs per call)
    assert quant["calibration"] == {"source": "digits (training split)", "samples": 32}
    assert "per output channel" in quant["weights"]
    validation = manifest["validation"]
    assert validation["passed"] and validation["criterion"] == "accuracy"
    assert validation["data"] == "digits held-out" and validation["samples"] == 359
    assert validation["reference_accuracy"] > 0.9  # the trained float model, not chance
    assert validation["accuracy_drop_points"] <= 2.0
    assert validation["top1_agreement"] >= 0.95
    # BatchNorm was folded before quantization: its statistics are in the quantized conv weights
    assert manifest["transforms"]["fold_norms"]["total"] == 4 and manifest["transforms"]["norms_left"] == 0
    if fmt == "pte":
        assert manifest["export"]["undelegated_op_count"] == 0


def test_int8_weights_are_stored_as_int8(int8):
    """The files hold the weight matrices as int8 (a quarter of float32), not float with fake-quant around it.
    (At this tiny size the fixed overhead of each format hides the ratio; benchmarks/int8.py reports sizes.)"""
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    onnx_dir = Path(int8.get("vit_digits", "onnx").bundle_dir)
    model = onnx.load(onnx_dir / "model.onnx")
    # weight matrices (rank 2) and conv kernels (rank 4); norms, biases' scales and the position table stay float
    matrices = [t for t in model.graph.initializer if len(t.dims) in (2, 4) and min(t.dims) > 1]
    assert matrices and all(t.data_type == onnx.TensorProto.INT8 for t in matrices), [
        (t.name, t.data_type) for t in matrices if t.data_type != onnx.TensorProto.INT8
    ]

    tflite = Path(int8.get("vit_digits", "tflite").bundle_dir) / "model.tflite"
    interpreter = Interpreter(model_path=str(tflite))
    sizes: dict[str, int] = {}
    for detail in interpreter.get_tensor_details():
        if len(detail["shape"]) == 2 and min(detail["shape"]) >= 10:  # fully connected weight matrices
            name = np.dtype(detail["dtype"]).name
            sizes[name] = sizes.get(name, 0) + int(np.prod(detail["shape"]))
    assert sizes.get("int8", 0) > 10 * sizes.get("float32", 0)


def test_static_tflite_has_int8_io_but_callers_use_float(int8):
    bundle = Path(int8.get("cnn_small", "tflite").bundle_dir)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(bundle / "model.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    (detail,) = runner.get_input_details().values()
    assert np.dtype(detail["dtype"]) == np.int8 and detail["quantization"][0] > 0

    from edgekit.data import load_dataset

    split = load_dataset("digits", (1, 1, 8, 8))
    with runtimes.load(bundle) as runtime:
        assert runtime.input_specs[0].dtype == "float32" and runtime.output_specs[0].dtype == "float32"
        logits = runtime.run({"image": split.x_test[:1]})["logits"]
    assert logits.dtype == np.float32
    # dequantized logits of a digit rank the same class first as the float model
    from edgekit.models import prepare_model

    spec = prepare_model("cnn_small", int8.weights("cnn_small"))
    with torch.no_grad():
        reference = spec.module(torch.from_numpy(split.x_test[:1])).numpy()
    assert logits.argmax() == reference.argmax()
    assert np.abs(logits - reference).max() < 0.25 * np.abs(reference).max()


def test_quantized_io_maps_with_the_tensors_scale_and_zero_point():
    from edgekit.runtimes.litert import Affine

    affine = Affine.of({"dtype": np.int8, "quantization": (0.05, -3)})
    x = np.array([-10.0, -1.0, 0.0, 0.049, 1.0, 10.0], dtype=np.float32)
    q = affine.quantize(x)
    assert q.dtype == np.int8
    assert q.tolist() == [-128, -23, -3, -2, 17, 127]  # saturates at the int8 range
    assert np.allclose(affine.dequantize(q)[1:5], [-1.0, 0.0, 0.05, 1.0])
    assert Affine.of({"dtype": np.float32, "quantization": (0.0, 0)}) is None
    assert Affine.of({"dtype": np.int64, "quantization": (0.0, 0)}) is None  # token ids are not quantized


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_dynamic_int8(int8, fmt):
    result = int8.get("vit_digits", fmt, "int8-dynamic")
    assert result.manifest.to_json()["precision"] == "int8-dynamic"
    assert result.manifest.to_json()["quantization"]["calibration"] is None
    assert "run time" in result.manifest.to_json()["quantization"]["activations"]
    assert result.validation.passed and result.validation.accuracy_drop <= 2.0


def test_accuracy_loss_beyond_the_threshold_fails_the_export(int8, tmp_path):
    """Calibrating on constant inputs squeezes every activation range to a point: the bundle is wrong, and
    the export says so instead of shipping it."""
    from edgekit.exporters.pipeline import export

    calib = tmp_path / "flat.npy"
    np.save(calib, np.zeros((16, 1, 8, 8), np.float32))
    out = tmp_path / "cnn-int8"
    with pytest.raises(ValidationFailed) as info:
        export("cnn_small", format="onnx", precision="int8", weights=int8.weights("cnn_small"), calib=calib,
               int8_recipe=STATIC_ONNX, out_dir=out)  # fmt: skip
    message = str(info.value)
    assert "accuracy" in message and "--calib" in message and "--max-accuracy-drop" in message
    assert not out.exists()
    rejected = json.loads((tmp_path / "cnn-int8.rejected" / MANIFEST_NAME).read_text())
    assert rejected["validation"]["passed"] is False
    assert rejected["validation"]["accuracy_drop_points"] > 2.0

    # the same bundle is accepted when the caller allows that loss explicitly
    drop = rejected["validation"]["accuracy_drop_points"]
    kept = export("cnn_small", format="onnx", precision="int8", weights=int8.weights("cnn_small"), calib=calib,
                  int8_recipe=STATIC_ONNX, out_dir=out, quality=QualityGate(max_accuracy_drop=drop + 1))  # fmt: skip
    assert kept.passed


def test_without_labels_top1_agreement_decides(tmp_path, tiny_configs):
    """An untrained model with no dataset is calibrated on random inputs and judged on agreement with FP32
    (an untrained ViT's near-tied logits often fail that; the gate, not the test, decides)."""
    from edgekit.exporters.pipeline import export

    result = export("vit_tiny", format="onnx", precision="int8", config=tiny_configs["vit_tiny"],
                    int8_recipe=STATIC_ONNX, out_dir=tmp_path / "b", calib_samples=16, allow_mismatch=True)  # fmt: skip
    validation = result.manifest.to_json()["validation"]
    assert validation["criterion"] in ("top1_agreement", "cosine") and validation["data"] == "random normal"
    assert validation["samples"] == 64 and validation["accuracy"] is None
    assert validation["passed"] == (validation["top1_agreement"] >= 0.9 or validation["cosine"] >= 0.99)
    assert result.manifest.to_json()["quantization"]["calibration"]["source"].startswith("random normal")


def test_unknown_precision_and_int8_on_portable_kernels_are_refused(tmp_path):
    from edgekit.exporters.pipeline import export

    with pytest.raises(UnsupportedOptionError, match="precision"):
        export("cnn_small", format="onnx", precision="int4", out_dir=tmp_path / "a")
    with pytest.raises(UnsupportedOptionError, match="xnnpack"):
        export("cnn_small", format="pte", delegate="portable", precision="int8-dynamic", out_dir=tmp_path / "b")


def test_quality_judgement_rules():
    """The gate itself, on made-up outputs: accuracy decides with labels; agreement or cosine without."""
    from edgekit.validate import judge_quantized

    gate = QualityGate()
    ref = [{"y": np.array([[2.0, 1.0, 0.0]])}, {"y": np.array([[0.0, 1.0, 2.0]])}, {"y": np.array([[0.0, 2.0, 1.0]])}]
    swapped = [{"y": np.array([[1.0, 2.0, 0.0]])}, ref[1], ref[2]]  # one of three decisions flipped
    labels = np.array([0, 2, 1])
    result = judge_quantized(ref, swapped, gate, "int8", "test", labels)
    assert result.criterion == "accuracy" and result.accuracy_drop == pytest.approx(33.3333, abs=1e-3)
    assert not result.passed
    assert judge_quantized(ref, swapped, QualityGate(max_accuracy_drop=40), "int8", "test", labels).passed
    # no labels: 67% agreement and a cosine below 0.99 fail; near-tied logits that flip but point the same way pass
    assert not judge_quantized(ref, swapped, gate, "int8", "test").passed
    tied = [{"y": np.array([[1.0, 1.001, 0.0]])}]
    flipped = [{"y": np.array([[1.001, 1.0, 0.0]])}]
    result = judge_quantized(tied, flipped, gate, "int8", "test")
    assert result.passed and result.criterion == "cosine" and result.top1_agreement == 0.0
    # non-finite outputs never pass
    assert not judge_quantized(ref, [{"y": np.full((1, 3), np.nan)}] * 3, gate, "int8", "test", labels).passed
