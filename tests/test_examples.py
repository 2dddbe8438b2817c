"""Every script under examples/ runs end to end with its quickest settings, as a subprocess, and prints what
its README says it prints (the figures parse as numbers, the checks say they passed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PERCENT = r"([0-9]+\.[0-9]+)%"


@dataclass(frozen=True)
class Example:
    folder: str
    args: tuple[str, ...]  # the quickest settings: a few epochs, the fastest format to export


EXAMPLES = {
    # one format: the other examples export all three, and a .pte export is the slowest step of the suite
    "formats": Example("formats", ("--model", "vit_digits", "--formats", "onnx", "--rounds", "1", "--runs", "2")),
    "split": Example("split", ("--epochs", "1", "--finetune-epochs", "1")),
    "streaming": Example("streaming", ("--epochs", "1")),
    "generation": Example("generation", ("--format", "onnx", "--pairs", "200", "--epochs", "1", "--held-out", "8")),
    "int8": Example("int8", ("--model", "cnn_small", "--format", "onnx", "--epochs", "3")),
    "fleet": Example("fleet", ("--epochs", "1", "--finetune-epochs", "1")),
}


def run_example(name: str, out: Path) -> str:
    """The script's output with runs of whitespace made one space, so that wrapping at any width cannot split a
    figure from its label."""
    example = EXAMPLES[name]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "100"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example.folder / "run.py"), *example.args, "--out", str(out)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800,
    )  # fmt: skip
    (out / "output.txt").write_text(proc.stdout)  # kept with the test's tmp_path, for reading a failure
    assert proc.returncode == 0, proc.stdout[-3000:]
    return " ".join(proc.stdout.split())


def percent(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in: {text[-2000:]}"
    value = float(match.group(1))
    assert 0.0 <= value <= 100.0
    return value


def test_every_example_folder_has_a_readme_and_a_tested_script():
    folders = {p.parent.name for p in (ROOT / "examples").glob("*/run.py")}
    assert folders == set(EXAMPLES)
    for folder in folders:
        readme = (ROOT / "examples" / folder / "README.md").read_text()
        assert "examples/" + folder + "/run.py" in readme, folder


@pytest.mark.examples
def test_formats_example(tmp_path):
    out = run_example("formats", tmp_path)  # it exits 1 when any format fails verification
    assert (tmp_path / "vit_digits-onnx" / "edgekit.json").is_file()
    assert re.search(r"│ onnx │ ok │", out), out[-2000:]


@pytest.mark.examples
def test_split_example(tmp_path):
    out = run_example("split", tmp_path)
    percent(r"full " + PERCENT, out)
    fused = percent(r"fused split " + PERCENT, out)
    through_workers = percent(r"split accuracy on digits: " + PERCENT, out)
    assert through_workers == pytest.approx(fused, abs=0.01)  # the workers run the planned shards


@pytest.mark.examples
def test_streaming_example(tmp_path):
    out = run_example("streaming", tmp_path)
    percent(r"accuracy " + PERCENT + r" on \d+ held-out digits", out)


@pytest.mark.examples
def test_generation_example(tmp_path):
    out = run_example("generation", tmp_path)
    assert "verified: the bundle's greedy tokens equal PyTorch's on all 8 held-out strings" in out
    gap = float(re.search(r"max abs difference ([0-9.e+-]+)", out).group(1))
    assert gap <= 1e-3
    percent(r"PyTorch " + PERCENT, out)
    percent(r"onnx bundle " + PERCENT, out)


@pytest.mark.examples
def test_int8_example(tmp_path):
    out = run_example("int8", tmp_path)
    fp32 = percent(r"FP32 " + PERCENT, out)
    int8 = percent(r"INT8 " + PERCENT, out)
    assert fp32 - int8 <= 2.0  # the export's own --max-accuracy-drop
    ratio = float(re.search(r"INT8 is ([0-9.]+)x the FP32 size", out).group(1))
    assert 0.0 < ratio < 0.6


@pytest.mark.examples
def test_fleet_example(tmp_path):
    out = run_example("fleet", tmp_path)
    percent(r"split accuracy on digits: " + PERCENT, out)
    assert "requires TLS and this side connected in plaintext" in out
    assert "fleet example done" in out
