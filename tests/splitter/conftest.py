"""A split plan built once per session (tiny ViT, three devices, one per format) and worker processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgekit.splitter.devices import DeviceSpec

EDGEKIT = str(Path(sys.executable).with_name("edgekit"))
TINY_SPLIT_CONFIG = {"depth": 2}  # vit_digits: 4 heads of 16, MLP 128
FORMATS = ("onnx", "tflite", "pte")


@pytest.fixture(scope="session")
def split_plan(tmp_path_factory):
    from edgekit.splitter.edvit import SplitSettings, plan_split

    devices = [DeviceSpec(f"dev{i}", None, 50_000_000, 5.0, fmt) for i, fmt in enumerate(FORMATS)]
    settings = SplitSettings(epochs=4, finetune_epochs=1, fusion_epochs=15, samples=4)
    root = tmp_path_factory.mktemp("split") / "plan"
    return plan_split("vit_digits", devices, root, config=TINY_SPLIT_CONFIG, settings=settings)


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen
    address: str
    workdir: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.proc.wait(timeout=10)


def start_worker_process(name: str, workdir: Path, *extra: str, executable: str = EDGEKIT) -> WorkerProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [executable, "worker", "--port", "0", "--workdir", str(workdir), "--name", name, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"listening on (\S+:\d+)", line)
        if match:
            return WorkerProcess(name, proc, match.group(1), workdir)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"worker {name} did not start: {line!r}")


@pytest.fixture
def worker_factory(tmp_path) -> Iterator:
    started: list[WorkerProcess] = []

    def start(name: str, *extra: str, executable: str = EDGEKIT, workdir: Path | None = None) -> WorkerProcess:
        w = start_worker_process(name, workdir or tmp_path / f"work-{name}", *extra, executable=executable)
        started.append(w)
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGCONT)
            w.proc.terminate()
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.proc.kill()


@pytest.fixture
def plan_workers(split_plan, worker_factory) -> dict[str, WorkerProcess]:
    """One worker process per device of the session plan."""
    return {d.name: worker_factory(d.name) for d in split_plan.devices}


def addresses(workers: dict[str, WorkerProcess]) -> dict[str, str]:
    return {name: w.address for name, w in workers.items()}
