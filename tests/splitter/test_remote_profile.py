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
