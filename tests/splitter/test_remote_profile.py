"""`edgekit profile BUNDLE --on DEVICE`: the profiler runs in the worker's process, with the worker's meter."""

from __future__ import annotations

import csv
import json

import grpc
import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.errors import WorkerError
from edgekit.fleet.auth import ClientAuth
from edgekit.profiling.profiler import ProfileReport
from edgekit.splitter.local import start_local_worker
from edgekit.splitter.plan import bundle_digest
from edgekit.splitter.remote_profile import ProfileSettings, profile_on
from edgekit.splitter.wire import proto

pytestmark = pytest.mark.workers


@pytest.fixture
def metered_worker(tmp_path, fleet):
    """A mutual-TLS worker whose energy meter is a fake INA226 reading a steady 3 W."""
    chip = tmp_path / "hwmon" / "hwmon0"
    chip.mkdir(parents=True)
    (chip / "name").write_text("ina226\n")
    (chip / "power1_input").write_text("3000000\n")
    worker = start_local_worker("dev0", tmp_path / "work", "--tls", str(fleet["dev0"]),
                                env={"EDGEKIT_HWMON_ROOT": str(tmp_path / "hwmon")})  # fmt: skip
    yield worker
    worker.stop()


def test_profile_on_a_worker_runs_there_with_its_meter(bundles, metered_worker, fleet, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_HWMON_ROOT", str(tmp_path / "absent"))  # this side has no meter: the numbers are theirs
    bundle = bundles.path("cnn_small", "onnx")
    out, rows = tmp_path / "p.json", tmp_path / "p.csv"
    result = CliRunner().invoke(cli, ["profile", str(bundle), "--on", f"dev0={metered_worker.address}", "--runs", "40",
                                      "--energy", "hwmon", "--idle", "0", "--tls", str(fleet["coordinator"]),
                                      "--json", str(out), "--csv", str(rows), "--plot", str(tmp_path / "p.png")],
                                catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["device"] == "dev0" and data["pid"] == metered_worker.proc.pid
    assert f"worker pid {metered_worker.proc.pid}" in result.output
    assert len(data["samples_ms"]) == 40 and data["load_ms"] > 0 and data["import_ms"] >= 0
    assert data["energy"]["source"] == "hwmon" and data["energy"]["average_watts"] == pytest.approx(3.0)
    assert len(list(csv.DictReader(open(rows)))) == 40
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    report = ProfileReport.from_json(data)
    assert report.to_json() == data  # the same object as a local profile, through JSON both ways
    # pinned by digest: held now, so the second profile sends nothing and still matches
    pb, pb_grpc = proto()
    auth = ClientAuth.from_options(str(fleet["coordinator"]), None)
    with auth.channel(metered_worker.address, "dev0", []) as channel:
        held = pb_grpc.ShardWorkerStub(channel).Health(pb.HealthRequest(), timeout=5).shards
    assert [(s.shard, s.digest) for s in held] == [(f"profile-{bundle_digest(bundle)[:16]}", bundle_digest(bundle))]
    again = profile_on(bundle, "dev0", metered_worker.address, auth, ProfileSettings(runs=5, energy="none"))
    assert again.pid == metered_worker.proc.pid and len(again.graphs[0].latency.samples_ms) == 5


def test_profile_on_names_the_worker_when_refused(bundles, metered_worker, fleet):
    with pytest.raises(WorkerError, match=rf"worker dev0 \({metered_worker.address}\): .*not signed by this fleet"):
        profile_on(bundles.path("cnn_small", "onnx"), "dev0", metered_worker.address,
                   ClientAuth.from_options(str(fleet["other"]), None))  # fmt: skip
    pb, pb_grpc = proto()
    auth = ClientAuth.from_options(str(fleet["coordinator"]), None)
    with auth.channel(metered_worker.address, "dev0", []) as channel:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.ShardWorkerStub(channel).Profile(pb.ProfileRequest(shard="nope", runs=1), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_profile_device_on_a_worker_feeds_the_splitter(metered_worker, fleet, tmp_path):
    out = tmp_path / "dev0.json"
    result = CliRunner().invoke(cli, ["profile-device", "--on", f"dev0={metered_worker.address}", "--tls",
                                      str(fleet["coordinator"]), "--model", "vit_digits", "--energy", "hwmon",
                                      "--set", "depth=2", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    device = json.loads(out.read_text())
    assert device["measured_by"] == {"worker": "dev0", "pid": metered_worker.proc.pid}
    assert device["name"] == "dev0" and device["model_config"]["depth"] == 2
    assert [b["name"] for b in device["blocks"] if b["name"].startswith("blocks.")] == ["blocks.0", "blocks.1"]
    assert device["idle_watts"] == pytest.approx(3.0) and device["power_source"] == "hwmon"  # the worker's meter
    from edgekit.splitter.devices import load_devices

    (tmp_path / "devices.yaml").write_text(f"devices:\n  - name: dev0\n    address: {metered_worker.address}\n"
                                           "    profile: dev0.json\n")  # fmt: skip
    (parsed,) = load_devices(tmp_path / "devices.yaml")
    assert parsed.gflops == pytest.approx(device["matmul_gflops"]) and parsed.source == "dev0.json"
    assert parsed.memory_bytes == device["memory_available_bytes"]


def test_profile_device_on_refuses_a_bad_configuration_in_one_line(metered_worker, fleet, tmp_path):
    result = CliRunner().invoke(cli, ["profile-device", "--on", f"dev0={metered_worker.address}", "--tls",
                                      str(fleet["coordinator"]), "--model", "vit_digits", "--set", "wings=3",
                                      "-o", str(tmp_path / "d.json")])  # fmt: skip
    assert result.exit_code == 2 and "wings" in result.output and "Traceback" not in result.output


def test_a_device_without_torch_is_measured_without_its_blocks(monkeypatch):
    import sys

    from edgekit.profiling.device import profile_device

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as on a torch-free Pi
    device = profile_device("vit_digits", energy="none", blocks_optional=True)
    assert device.blocks == [] and "no torch" in device.blocks_timed_by and device.matmul_gflops > 0
    with pytest.raises(ImportError):
        profile_device("vit_digits", energy="none")
