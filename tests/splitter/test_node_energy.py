"""Energy per node: real worker processes, one metered by a fake INA226 (a hwmon sysfs directory whose power the
test changes mid-window), one without any meter; the coordinator reads their running totals over the wire."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest

from edgekit.errors import WorkerError
from edgekit.fleet.auth import ClientAuth
from edgekit.profiling.energy.totalizer import EnergyTotal
from edgekit.splitter.local import start_local_worker
from edgekit.splitter.node_energy import between, read_totals
from edgekit.splitter.runreport import build_report
from edgekit.splitter.wire import proto
from edgekit.splitter.workerset import WorkerSet

TOKEN = "energy-test-token-0123456789abcdef"


def fake_ina226(root: Path, microwatts: int) -> Path:
    chip = root / "hwmon" / "hwmon0"
    chip.mkdir(parents=True, exist_ok=True)
    (chip / "name").write_text("ina226\n")
    set_power(root, microwatts)
    return root / "hwmon"


def set_power(root: Path, microwatts: int) -> None:
    path = root / "hwmon" / "hwmon0" / "power1_input"
    path.with_suffix(".tmp").write_text(f"{microwatts}\n")
    path.with_suffix(".tmp").rename(path)  # the worker's sampler never reads a half-written value


NO_METERS = {"EDGEKIT_POWERCAP_ROOT": "/nonexistent/powercap", "EDGEKIT_HWMON_ROOT": "/nonexistent/hwmon",
             "EDGEKIT_VCGENCMD": "/nonexistent/vcgencmd"}  # fmt: skip


@pytest.fixture
def workers(tmp_path):
    started = []

    def start(name: str, *extra: str, env=None):
        w = start_local_worker(name, tmp_path / name, *extra, env=env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop(signal.SIGKILL)


def test_energy_follows_the_fake_meters_power_over_the_window_and_a_meterless_node_has_none(tmp_path, workers):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    hwmon = fake_ina226(tmp_path, 2_000_000)  # 2 W
    metered = workers("metered", "--energy", "hwmon", "--token-file", str(token),
                      env={**NO_METERS, "EDGEKIT_HWMON_ROOT": str(hwmon)})  # fmt: skip
    bare = workers("bare", "--energy", "auto", "--token-file", str(token), env=NO_METERS)
    addresses = {"metered": metered.address, "bare": bare.address}
    ws = WorkerSet(addresses, ClientAuth.from_options(None, str(token)))
    try:
        start = read_totals(ws.stubs, timeout=5)
        t0 = time.perf_counter()
        time.sleep(0.8)
        set_power(tmp_path, 5_000_000)  # 5 W for the second half: a constant would not show the sampling
        t1 = time.perf_counter()
        time.sleep(0.8)
        end = read_totals(ws.stubs, timeout=5)
        t2 = time.perf_counter()
    finally:
        ws.close()
    energy = between(start, end)
    expected = 2.0 * (t1 - t0) + 5.0 * (t2 - t1)
    m = energy["metered"]
    assert m.meter == "hwmon" and m.joules == pytest.approx(expected, abs=0.3)
    assert m.seconds == pytest.approx(t2 - t0, abs=0.1)
    assert 2.0 < m.mean_watts < 5.0
    b = energy["bare"]
    assert b.meter is None and b.joules is None and b.mean_watts is None
    assert "no meter here" in b.reason and "hwmon" in b.reason  # auto said what it tried

    report = build_report([], t2 - t0, workers=addresses, energy=energy)
    nodes = {n["worker"]: n for n in report.to_json()["nodes"]}
    assert nodes["metered"]["energy"]["meter"] == "hwmon"
    assert nodes["metered"]["energy"]["joules"] == pytest.approx(expected, abs=0.3)
    assert nodes["bare"]["energy"]["joules"] is None and nodes["bare"]["energy"]["mean_watts"] is None

    from rich.console import Console

    from edgekit.cli.split_report import node_table

    console = Console(width=200, record=True)
    console.print(node_table(report))
    cells = {}
    for line in console.export_text().splitlines():
        row = [c.strip() for c in line.strip("│ ").split("│")]
        cells[row[0]] = row[-2:]  # energy J (meter), mean W
    assert cells["metered"][0] == f"{m.joules:.3g} (hwmon)" and cells["metered"][1] == f"{m.mean_watts:.3g}"
    assert cells["bare"] == ["-", "-"]


def test_energy_is_authenticated_like_every_worker_call(tmp_path, workers):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    w = workers("metered", "--energy", "none", "--token-file", str(token), env=NO_METERS)
    pb, pb_grpc = proto()
    with grpc.insecure_channel(w.address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.ShardWorkerStub(channel).Energy(pb.EnergyRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    ws = WorkerSet({"metered": w.address}, ClientAuth.from_options(None, str(token)))
    try:
        total = read_totals(ws.stubs, timeout=5)["metered"]
    finally:
        ws.close()
    assert total.meter == "" and total.reason == "started with --energy none"


def test_a_named_meter_that_cannot_read_stops_the_worker_at_start(tmp_path, workers):
    with pytest.raises(WorkerError, match="did not start"):
        workers("w", "--energy", "hwmon", env=NO_METERS)


def test_a_restart_between_the_readings_gives_no_energy():
    a = EnergyTotal("hwmon", 10.0, 5.0, since_unix_ns=1)
    assert between({"w": a}, {"w": EnergyTotal("hwmon", 12.0, 6.0, since_unix_ns=1)})["w"].joules == pytest.approx(2.0)
    restarted = between({"w": a}, {"w": EnergyTotal("hwmon", 1.0, 1.0, since_unix_ns=2)})["w"]
    assert restarted.joules is None and "restarted" in restarted.reason
    gone = between({"w": a}, {})["w"]
    assert gone.joules is None and gone.reason == "not read at the end"
