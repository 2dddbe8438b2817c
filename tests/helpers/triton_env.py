"""A small environment of its own for tritonclient, the protocol's standard client (NVIDIA Triton's).

tritonclient's gRPC module needs protobuf < 7 and edgekit's generated code protobuf >= 7, so the client
cannot share the test environment: it gets build/tritonclient-venv, built once through pip and reused while
its pins are unchanged. Tests run tests/serving/triton_client.py in it as a separate process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "build" / "tritonclient-venv"
REQUIREMENTS = ["tritonclient[http,grpc]==2.73.0", "numpy==2.4.6"]
STAMP = VENV / ".installed"
CLIENT = ROOT / "tests" / "serving" / "triton_client.py"


@pytest.fixture(scope="session")
def triton_python() -> Path:
    python = VENV / "bin" / "python"
    wanted = json.dumps(REQUIREMENTS)
    if not (STAMP.is_file() and STAMP.read_text() == wanted and python.is_file()):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *REQUIREMENTS], check=True, timeout=900)
        STAMP.write_text(wanted)
    return python


def run_client(python: Path, *args: str) -> subprocess.CompletedProcess:
    """The client script in the tritonclient environment; nothing of edgekit is importable there."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python), str(CLIENT), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=env, cwd="/")  # fmt: skip
