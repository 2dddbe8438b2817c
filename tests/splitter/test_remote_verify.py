"""`edgekit export --verify-on DEVICE`: the export's verification run again by a worker, recorded beside the host's."""

from __future__ import annotations

import json
import platform

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.errors import UnsupportedOptionError, ValidationFailed
from edgekit.exporters.pipeline import export
from edgekit.splitter.local import start_local_worker

pytestmark = pytest.mark.workers

CNN = {"widths": [4, 8]}


@pytest.fixture
def worker(tmp_path, fleet):
    w = start_local_worker("dev0", tmp_path / "work", "--tls", str(fleet["dev0"]))
    yield w
    w.stop()


def test_verify_on_a_worker_records_its_run_beside_the_hosts(worker, fleet, tmp_path):
    out = tmp_path / "b"
    result = CliRunner().invoke(cli, ["export", "cnn_small", "--set", "widths=[4,8]", "-f", "onnx", "-o", str(out),
                                      "--verify-on", f"dev0={worker.address}", "--tls", str(fleet["coordinator"])],
                                catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "edgekit.json").read_text())
    (record,) = manifest["verified_on"]
    assert record["device"] == "dev0" and record["address"] == worker.address
    assert record["machine"] == platform.machine()
    assert record["validation"]["passed"] and record["validation"]["samples"] == manifest["validation"]["samples"]
    assert record["validation"]["max_abs_err"] <= record["validation"]["allowed_abs_err"]
    assert "on dev0" in result.output


class WrongDevice:
    """A device whose runtime is off by a constant: the export must fail, naming it."""

    device, address, machine, worker_version = "pi-bad", "10.0.0.9:50051", "aarch64", "0"

    def __call__(self, bundle_dir, input_sets, graph=None):
        from edgekit import runtimes

        with runtimes.load(bundle_dir) as runtime:
            return [{k: v + np.float32(0.5) for k, v in runtime.run(s).items()} for s in input_sets]


def test_a_device_that_disagrees_fails_the_export_and_names_itself(tmp_path):
    with pytest.raises(ValidationFailed, match="pi-bad"):
        export("cnn_small", config=CNN, format="onnx", out_dir=tmp_path / "b", verify_on=[WrongDevice()], samples=3)
    assert not (tmp_path / "b").exists()
    rejected = json.loads((tmp_path / "b.rejected" / "edgekit.json").read_text())
    assert rejected["validation"]["passed"] and not rejected["verified_on"][0]["validation"]["passed"]


def test_verify_on_refuses_what_a_worker_cannot_run(tmp_path):
    with pytest.raises(UnsupportedOptionError, match="verify-on"):
        export("lmuformer", config={"dim": 16, "order": 8, "seq_len": 8, "in_features": 8}, format="onnx",
               out_dir=tmp_path / "s", streaming=True, verify_on=[WrongDevice()])  # fmt: skip
