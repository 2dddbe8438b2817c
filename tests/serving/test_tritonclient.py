"""A client no edgekit code wrote -- tritonclient, over HTTP and gRPC, from its own environment -- calls
`edgekit serve` and gets the logits `edgekit run` gives for a bundle and `infer-split` for a split plan."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.bundle import read_bundle
from edgekit.validate import softmax
from tests.helpers.cli import invoke
from tests.helpers.triton_env import run_client
from tests.helpers.workers import local_predictions

pytestmark = pytest.mark.workers
PROTOCOLS = {"http": "http_address", "grpc": "grpc_address"}


def _call(triton_python, server, protocol, x, tmp_path, model=None):
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / f"out-{protocol}.npz"
    address = getattr(server, PROTOCOLS[protocol])
    done = run_client(triton_python, protocol, address, model or server.model, tmp_path / "x.npy", out)
    return done, (dict(np.load(out)) if done.returncode == 0 else None)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_bundle_answers_as_edgekit_run_does(protocol, triton_python, bundle_server, bundle_path, tmp_path):
    manifest = read_bundle(bundle_path).manifest
    spec = manifest.graph()
    x = np.random.default_rng(7).standard_normal(spec.inputs[0].shape).astype(np.float32)
    done, outputs = _call(triton_python, bundle_server, protocol, x, tmp_path)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    meta = reply["metadata"]
    assert reply["id"] == "req-1"
    assert meta["name"] == manifest.model.name and meta["platform"] == "edgekit_onnx"
    assert [(t["name"], t["datatype"], list(t["shape"])) for t in meta["inputs"]] == [
        (s.name, "FP32", list(s.shape)) for s in spec.inputs
    ]
    assert [t["name"] for t in meta["outputs"]] == [s.name for s in spec.outputs]

    run = invoke("run", str(bundle_path), "-i", str(tmp_path / "x.npy"), "--json")
    assert run.exit_code == 0, run.output
    expected = json.loads(run.stdout)["outputs"]
    for name, value in expected.items():
        np.testing.assert_allclose(outputs[name], np.asarray(value["values"], np.float32), rtol=0, atol=1e-6)
        assert outputs[name].dtype == np.float32


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tritonclient_reads_the_servers_error_for_an_unknown_model(protocol, triton_python, bundle_server, tmp_path):
    x = np.zeros((1, 3, 32, 32), np.float32)
    done, _ = _call(triton_python, bundle_server, protocol, x, tmp_path, model="no-such-model")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "unknown model 'no-such-model'" in done.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_split_plan_answers_as_infer_split_does(protocol, triton_python, plan_server, split_plan, plan_workers,
                                                  tmp_path):  # fmt: skip
    from edgekit.data import load_dataset

    split = load_dataset("digits", tuple(split_plan.input["shape"]))
    x = np.ascontiguousarray(split.x_test[3:4], dtype=np.float32)
    done, outputs = _call(triton_python, plan_server, protocol, x, tmp_path)
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)["metadata"]
    assert meta["platform"] == "edgekit_split"
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [("logits", "FP32"), ("prediction", "INT64")]

    np.testing.assert_allclose(outputs["logits"], local_predictions(split_plan, x), rtol=0, atol=1e-5)
    workers = ",".join(f"{name}={w.address}" for name, w in plan_workers.items())
    result = tmp_path / "infer-split.json"
    run = invoke("infer-split", str(split_plan.root), "--workers", workers, "-i", str(tmp_path / "x.npy"),
                 "--json", str(result), "--timeout", "30")  # fmt: skip
    assert run.exit_code == 0, run.output
    expected = json.loads(result.read_text())
    np.testing.assert_allclose(softmax(outputs["logits"][0]), expected["probabilities"], rtol=0, atol=1e-6)
    assert split_plan.class_names[int(outputs["prediction"][0])] == expected["prediction"]
    assert outputs["prediction"].dtype == np.int64
