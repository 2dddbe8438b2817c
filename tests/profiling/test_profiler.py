"""`edgekit profile`, `edgekit bench` and `edgekit profile-device` end to end on real bundles."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from edgekit.bundle import read_bundle
from edgekit.cli import cli
from edgekit.errors import UnsupportedOptionError
from edgekit.inputs import make_inputs
from edgekit.profiling.operators import operator_profile
from edgekit.profiling.profiler import profile


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def no_meters(tmp_path, monkeypatch):
    for var in ("EDGEKIT_POWERCAP_ROOT", "EDGEKIT_HWMON_ROOT", "EDGEKIT_VCGENCMD"):
        monkeypatch.setenv(var, str(tmp_path / "absent"))


@pytest.mark.parametrize("fmt", ["pte", "tflite", "onnx"])
def test_profile_json_for_every_format(bundles, tmp_path, fmt, no_meters):
    out = tmp_path / "p.json"
    result = invoke("profile", str(bundles.path("cnn_small", fmt)), "--runs", "50", "--json", str(out),
                    "--csv", str(tmp_path / "p.csv"))  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert len(data["samples_ms"]) == 50 and data["runs"] == 50
    assert data["min_ms"] <= data["p50_ms"] <= data["p90_ms"] <= data["p99_ms"] <= data["max_ms"]
    assert data["load_ms"] > 0 and data["first_inference_ms"] > 0 and data["peak_rss_bytes"] > 0
    energy = data["energy"]
    assert energy["source"] == "estimate"  # no meter on this machine (or in the pointed-at trees)
    assert energy["joules_per_inference"] > 0 and energy["average_watts"] > 0
    flops = read_bundle(bundles.path("cnn_small", fmt)).manifest.to_json()["model"]["flops"]
    assert flops > 0 and str(round(flops / 1e6, 1)) in energy["detail"]
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 50 and float(rows[0]["latency_ms"]) > 0


def test_profile_with_a_power_meter(bundles, tmp_path, monkeypatch):
    # A fake INA226 reading a steady 4 W: the report must name the meter and integrate its power.
    chip = tmp_path / "hwmon" / "hwmon0"
    chip.mkdir(parents=True)
    (chip / "name").write_text("ina226\n")
    (chip / "power1_input").write_text("4000000\n")
    monkeypatch.setenv("EDGEKIT_HWMON_ROOT", str(tmp_path / "hwmon"))
    report = profile(bundles.path("cnn_small", "onnx"), runs=200, energy="hwmon", idle_seconds=0)
    energy = report.graphs[0].energy
    assert energy.source == "hwmon" and energy.average_watts == pytest.approx(4.0)
    assert energy.joules_per_inference == pytest.approx(4.0 * energy.window_seconds / 200, rel=0.02)
    assert energy.trace


def test_profile_reports_a_window_below_the_noise_floor(bundles, tmp_path, monkeypatch):
    # A steady 4 W sensor: the model adds nothing the meter can see, so there is no energy per inference.
    chip = tmp_path / "hwmon" / "hwmon0"
    chip.mkdir(parents=True)
    (chip / "name").write_text("ina226\n")
    (chip / "power1_input").write_text("4000000\n")
    monkeypatch.setenv("EDGEKIT_HWMON_ROOT", str(tmp_path / "hwmon"))
    report = profile(bundles.path("cnn_small", "onnx"), runs=50, energy="hwmon", idle_seconds=0.2)
    energy = report.graphs[0].energy
    assert energy.joules_per_inference is None
    assert energy.below_noise_floor is not None and energy.below_noise_floor.idle_joules > 0
    assert "below the noise floor" in energy.detail
    assert report.to_json()["energy"]["below_noise_floor"]["gross_joules"] > 0
    result = invoke("profile", str(bundles.path("cnn_small", "onnx")), "--runs", "20", "--energy", "hwmon",
                    "--idle", "0.2")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "below noise floor" in result.output and "gross" in result.output


def test_profile_device_without_the_requested_meter_is_one_line(tmp_path, no_meters):
    result = invoke("profile-device", "--model", "vit_digits", "--energy", "rapl", "-o", str(tmp_path / "d.json"))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "rapl" in lines[0]
    assert "internal error" not in result.stderr and not (tmp_path / "d.json").exists()


def test_duration_mode_runs_at_least_that_long(bundles, no_meters):
    report = profile(bundles.path("cnn_small", "onnx"), runs=1, duration=0.3, energy="none")
    lat = report.graphs[0].latency
    assert sum(lat.samples_ms) >= 250 and len(lat.samples_ms) > 10
    assert report.graphs[0].energy is None


def test_unknown_energy_choice_lists_the_meters(bundles):
    result = invoke("profile", str(bundles.path("cnn_small", "onnx")), "--energy", "rapll")
    assert result.exit_code == 2 and "rapl" in result.stderr and "hwmon" in result.stderr


def test_requested_meter_that_is_absent_is_an_error(bundles, no_meters):
    result = invoke("profile", str(bundles.path("cnn_small", "onnx")), "--energy", "rapl")
    assert result.exit_code == 2 and "cannot be read here" in result.stderr


@pytest.mark.parametrize("fmt, placement", [("onnx", "CPUExecutionProvider"), ("pte", "xnnpack")])
def test_operator_profile(bundles, fmt, placement):
    bundle = read_bundle(bundles.path("cnn_small", fmt))
    stats = operator_profile(bundle, make_inputs(bundle.graph().inputs, 1)[0], runs=5)
    assert stats and sum(s.share for s in stats) == pytest.approx(1.0)
    assert all(s.placement == placement for s in stats)
    assert any("onv" in s.op for s in stats)  # Conv / Convolution (NHWC, F32) IGEMM


def test_operator_profile_says_litert_has_none(bundles):
    bundle = read_bundle(bundles.path("cnn_small", "tflite"))
    with pytest.raises(UnsupportedOptionError, match="LiteRT"):
        operator_profile(bundle, make_inputs(bundle.graph().inputs, 1)[0])


def test_plot_writes_a_png(bundles, tmp_path, no_meters):
    result = invoke(
        "profile", str(bundles.path("cnn_small", "onnx")), "--runs", "20", "--plot", str(tmp_path / "p.png")
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_prints_every_format(tmp_path, no_meters):
    out = tmp_path / "rows.json"
    result = invoke("bench", "cnn_small", "--set", "widths=[4,8]", "-o", str(tmp_path / "b"), "--runs", "20",
                    "--json", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["format"] for r in rows] == ["pte", "tflite", "onnx"]
    assert all(r["status"] == "ok" and r["p50_ms"] > 0 and r["energy_source"] == "estimate" for r in rows)


def test_profile_device_writes_what_the_splitter_reads(tmp_path, no_meters):
    out = tmp_path / "device.json"
    result = invoke("profile-device", "--model", "vit_digits", "--name", "bench-box", "-o", str(out))
    assert result.exit_code == 0, result.output
    device = json.loads(out.read_text())
    assert device["schema"] == "edgekit.device/1" and device["name"] == "bench-box"
    names = [b["name"] for b in device["blocks"]]
    assert names[0] == "patch_embed" and [n for n in names if n.startswith("blocks.")] == [
        f"blocks.{i}" for i in range(4)
    ]
    assert all(b["ms"] > 0 for b in device["blocks"])
    assert device["total_ms"] == pytest.approx(sum(b["ms"] for b in device["blocks"]))
    assert device["memory_available_bytes"] > 0 and device["matmul_gflops"] > 0
