"""The torch-free device environment (.venv-runtime): edgekit's base install, ONNX Runtime and the legacy
tflite-runtime wheel (numpy<2, so it can never share the export environment), built once and reused; the
package itself is reinstalled when its code changes. Test modules take ``runtime_env`` as a fixture."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-runtime"
REQUIREMENTS = ["numpy<2", "tflite-runtime==2.14.0"]
STAMP = VENV / ".installed"


def _venv_python() -> Path:
    return VENV / "bin" / "python"


SOURCE_STAMP = VENV / ".edgekit-source"


def _source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "edgekit").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def runtime_env() -> Path:
    wanted = json.dumps(REQUIREMENTS + [(ROOT / "pyproject.toml").read_text()])
    pip = [str(_venv_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if not (STAMP.is_file() and STAMP.read_text() == wanted):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([*pip, f"{ROOT}[onnx,split,text]", *REQUIREMENTS], check=True, timeout=900)
        STAMP.write_text(wanted)
        SOURCE_STAMP.write_text(_source_digest())
    # The environment holds a copy of edgekit, not the checkout: reinstall the package alone when its code changed.
    source = _source_digest()
    if not (SOURCE_STAMP.is_file() and SOURCE_STAMP.read_text() == source):
        subprocess.run([*pip, "--no-deps", "--force-reinstall", str(ROOT)], check=True, timeout=600)
        SOURCE_STAMP.write_text(source)
    return _venv_python()


def _run(python: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=300, env=env, cwd="/")
