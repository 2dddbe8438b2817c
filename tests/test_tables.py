"""Every table the CLI prints reads at 80 columns, which is what a pipe gets too: cells wrap, names are never
cut, and package names, paths and user text are shown as written (not eaten as rich markup)."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.cli.export import export_table
from edgekit.profiling.bench import FormatRow
from edgekit.profiling.report import bench_table, format_table
from tests.helpers.render import assert_fits, rendered


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_models_table_fits_and_names_every_model():
    from edgekit.models import list_models

    assert_fits(run_cli("models"), whole=tuple(list_models()))


def test_targets_table_fits():
    from edgekit.targets import TARGETS

    assert_fits(run_cli("targets"), whole=tuple(name for name, _ in TARGETS.items()))


def test_doctor_shows_every_extra_with_its_brackets():
    from edgekit.formats import FORMATS

    text = run_cli("doctor")
    extras = tuple(f"edgekit-sdk[{fmt.runtime_extra}]" for _, fmt in FORMATS.items()) + ("edgekit-sdk[export]",)
    assert_fits(text, whole=extras)


def test_export_table_fits(bundles):
    result = bundles.get("cnn_small", "onnx")
    assert_fits(rendered(export_table(result)), whole=("model.onnx.data", "verification"))


def test_run_and_profile_tables_fit(bundles, tmp_path, monkeypatch):
    for var in ("EDGEKIT_POWERCAP_ROOT", "EDGEKIT_HWMON_ROOT", "EDGEKIT_VCGENCMD"):
        monkeypatch.setenv(var, str(tmp_path / "absent"))
    bundle = str(bundles.path("vit_digits", "tflite"))
    assert_fits(run_cli("run", bundle, "--random"), whole=("logits", "probability"))
    assert_fits(run_cli("profile", bundle, "--runs", "5", "--warmup", "1"), whole=("first inference", "peak RSS"))


def test_format_comparison_tables_fit():
    rows = [
        FormatRow("eager", "ok", 22_870_000, 0.0, p50_ms=34.1, ratio_to_eager=1.0),
        FormatRow(
            "pte",
            "ok",
            22_860_000,
            1.4e-6,
            1.0,
            41.2,
            0,
            p50_ms=21.7,
            p90_ms=23.0,
            ratio_to_eager=0.63,
            joules_per_inference=0.0123,
            energy_source="estimate",
        ),  # fmt: skip
        FormatRow("tflite", "verification failed", detail="max abs error 0.3 (allowed 1e-4)"),
    ]
    assert_fits(rendered(format_table(rows, "vit_tiny (5 rounds x 20 runs, medians)")), whole=("verification",))
    assert_fits(rendered(bench_table(rows[1:], "edgekit bench vit_tiny (50 runs per format)")), whole=("estimate",))


def test_a_tflite_export_prints_no_toolchain_banner(tmp_path):
    """TensorFlow (under litert-torch) writes absl / oneDNN start-up lines to fd 2 on import; a normal run must
    not show them (they stay in the --debug log)."""
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit.cli", "export", "cnn_small", "--set", "widths=[4,8]", "-f", "tflite",
         "-o", str(tmp_path / "b")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "absl" not in proc.stderr and "oneDNN" not in proc.stderr, proc.stderr
