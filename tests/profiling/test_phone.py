"""`edgekit profile BUNDLE --on adb[:SERIAL]` against a fake adb and fake phone tools (tests/helpers/phone.py)."""

from __future__ import annotations

import json

import pytest

from edgekit.profiling.phone_tools import ToolOutputError, parse_benchmark_model, parse_executor_runner
from tests.helpers.cli import assert_user_error, invoke
from tests.helpers.phone import fake_phone


@pytest.fixture
def phone(tmp_path, monkeypatch):
    made = fake_phone(tmp_path / "phone", serials=("emulator-5554", "R5CT12345"))
    for key, value in made.env().items():
        monkeypatch.setenv(key, value)
    return made


def _profile(bundle, target, tmp_path, *extra):
    out = tmp_path / "report.json"
    result = invoke("profile", str(bundle), "--on", target, "--runs", "40", "--warmup", "3", "--idle", "0.3",
                    "--json", str(out), *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
    return result, json.loads(out.read_text())


def test_onnx_on_a_phone_keeps_every_run_and_measures_the_battery(bundles, phone, tmp_path):
    result, report = _profile(bundles.path("cnn_small", "onnx"), "adb:R5CT12345", tmp_path, "--threads", "2")
    assert "-r 40 -x 2 -e cpu" in phone.args("perf_test")
    graph = report["graphs"][0]
    expected = [(0.0004 + 0.00001 * (i % 7)) * 1e3 for i in range(40)]  # what the fake tool wrote per run
    assert graph["samples_ms"] == pytest.approx(expected)
    assert graph["p50_ms"] == pytest.approx(sorted(expected)[19:21][0], abs=0.011)
    assert graph["load_ms"] == pytest.approx(12.3) and graph["first_inference_ms"] == 2.0
    assert graph["peak_rss_bytes"] == 23592960
    assert report["device"] == "adb:R5CT12345 (Pixel 7)" and report["host"]["machine"] == "arm64-v8a"
    energy = graph["energy"]
    # the fake tool draws 900 mA instead of 350 mA at 3.9 V for 0.8 s: ~1.7 J over idle, shared by 40 runs
    assert energy["source"] == "android-battery" and energy["idle_watts"] == pytest.approx(1.365, rel=0.01)
    assert 0.5 * 1.716 / 40 < energy["joules_per_inference"] < 1.5 * 1.716 / 40
    assert "Pixel 7" in result.output and "Tensor G2" not in result.output  # the table names the device once


def test_tflite_on_a_phone_reports_what_benchmark_model_printed(bundles, phone, tmp_path):
    result, report = _profile(bundles.path("cnn_small", "tflite"), "adb:emulator-5554", tmp_path, "--energy",
                              "none")  # fmt: skip
    args = phone.args("benchmark_model")
    assert "--num_runs=40" in args and "--warmup_runs=3" in args and "--graph=" in args
    graph = report["graphs"][0]
    assert graph["samples_ms"] == [] and graph["runs"] == 40
    assert graph["mean_ms"] == pytest.approx(0.4105) and graph["p50_ms"] == pytest.approx(0.404)
    assert graph["p90_ms"] is None and graph["p99_ms"] is None  # not printed by the tool: unknown, not invented
    assert graph["min_ms"] == pytest.approx(0.380) and graph["max_ms"] == pytest.approx(0.520)
    assert graph["first_inference_ms"] == pytest.approx(0.812) and graph["load_ms"] == pytest.approx(3.217)
    assert graph["peak_rss_bytes"] == int(11.5 * 2**20) and graph["energy"] is None
    assert "benchmark_model" in result.output and "not printed by the tool" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_pte_on_a_phone_times_a_first_run_and_the_mean(bundles, phone, tmp_path):
    csv = tmp_path / "runs.csv"
    _, report = _profile(bundles.path("cnn_small", "pte"), "adb:emulator-5554", tmp_path, "--energy", "none",
                         "--csv", str(csv))  # fmt: skip
    calls = phone.args("executor_runner").splitlines()
    assert [c.split("--num_executions=")[1] for c in calls] == ["1", "40"]
    graph = report["graphs"][0]
    assert graph["mean_ms"] == pytest.approx(0.5) and graph["first_inference_ms"] == pytest.approx(5.0)
    assert graph["load_ms"] == pytest.approx(4.027, abs=1e-3)  # "Method loaded." minus the first log line
    assert graph["p50_ms"] is None and report["timed_by"].endswith("executor_runner on the phone")
    assert "mean,0.5" in csv.read_text()


def test_a_tool_given_by_path_and_the_plot(bundles, phone, tmp_path):
    moved = phone.root / "data/local/tmp/bin/my_benchmark"
    moved.parent.mkdir(parents=True)
    (phone.root / "data/local/tmp/benchmark_model").rename(moved)
    plot = tmp_path / "p.png"
    _profile(bundles.path("cnn_small", "tflite"), "adb:emulator-5554", tmp_path, "--energy", "none", "--tool",
             "/data/local/tmp/bin/my_benchmark", "--plot", str(plot))  # fmt: skip
    assert plot.stat().st_size > 1000


@pytest.mark.parametrize(
    ("target", "setup", "fragments"),
    [
        ("adb", None, ("more than one device", "adb:SERIAL")),
        ("adb:NOPE", None, ("device 'NOPE' not found", "adb devices")),
        ("adb:emulator-5554", "no-tool", ("none of benchmark_model", "--tool")),
        ("adb:emulator-5554", "no-adb", ("not found", "platform-tools")),
    ],
)
def test_phone_problems_are_one_line(bundles, phone, tmp_path, monkeypatch, target, setup, fragments):
    if setup == "no-tool":
        (phone.root / "data/local/tmp/benchmark_model").unlink()
    if setup == "no-adb":
        monkeypatch.setenv("EDGEKIT_ADB", str(tmp_path / "nothing-here"))
    result = invoke("profile", str(bundles.path("cnn_small", "tflite")), "--on", target, "--energy", "none")
    assert_user_error(result, *fragments)


def test_a_wrong_file_is_refused_by_the_phone_tool(bundles, phone, tmp_path):
    broken = bundles.copy("cnn_small", "tflite", tmp_path)
    tool = phone.root / "data/local/tmp/benchmark_model"
    tool.write_text(tool.read_text().replace('b"TFL3"', 'b"XXXX"'))  # this "phone" only accepts other files
    result = invoke("profile", str(broken), "--on", "adb:emulator-5554", "--energy", "none")
    assert_user_error(result, "benchmark_model exited 1", "could not load model")


def test_parsers_refuse_output_that_is_not_the_tools():
    with pytest.raises(ToolOutputError, match="count="):
        parse_benchmark_model(["Segmentation fault"], None, 10)
    with pytest.raises(ToolOutputError, match="ran 5 time"):
        parse_executor_runner(["Model executed successfully 1 time(s) in 2.0 ms.",
                               "Model executed successfully 5 time(s) in 2.0 ms."], None, 10)  # fmt: skip
