"""The arm64 device environment (tools/arm64/environment.py), built once per session, and the run's summary."""

from __future__ import annotations

import os
import time

import pytest

from tests.arm64.report import REPORT, REPORT_PATH
from tests.quantization.conftest import int8  # noqa: F401  (the trained INT8 bundles, shared with tests/quantization)
from tools.arm64.environment import Arm64Environment, BuildError


@pytest.fixture(scope="session")
def arm64_env() -> Arm64Environment:
    if os.geteuid() != 0:
        pytest.fail("the arm64 environment runs under `unshare --mount` (bind-mounting /proc/cpuinfo): run as root")
    start = time.monotonic()
    try:
        env = Arm64Environment().build()
    except BuildError as exc:
        pytest.fail(f"building the arm64 environment failed: {exc}")
    REPORT.facts["environment build or reuse (s)"] = round(time.monotonic() - start, 1)
    return env


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not REPORT.rows and not REPORT.facts:
        return
    REPORT.write(REPORT_PATH)
    terminalreporter.section("arm64 (emulated Cortex-A76) vs x86 and PyTorch")
    for line in REPORT.lines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(written to {REPORT_PATH})")
