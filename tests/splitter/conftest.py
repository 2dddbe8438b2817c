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


class WorkerPool:
    """Starts worker processes and stops every one it started."""

    def __init__(self, root: Path):
        self.root = root
        self.started: list[WorkerProcess] = []

    def start(self, name: str, *extra: str, executable: str = EDGEKIT, workdir: Path | None = None) -> WorkerProcess:
        workdir = workdir or self.root / f"work-{name}-{len(self.started)}"
        w = start_worker_process(name, workdir, *extra, executable=executable)
        self.started.append(w)
        return w

    def stop_all(self) -> None:
        for w in self.started:
            if w.proc.poll() is None:
                w.proc.kill()  # a test's workers need no graceful exit (the restart test stops its own with SIGTERM)
                w.proc.wait(timeout=10)


@pytest.fixture
def worker_factory(tmp_path) -> Iterator:
    pool = WorkerPool(tmp_path)
    yield pool.start
    pool.stop_all()


@pytest.fixture(scope="module")
def shared_workers(split_plan, tmp_path_factory) -> Iterator[dict[str, WorkerProcess]]:
    """One worker per device, with its shard deployed, for tests that do not harm their workers."""
    from edgekit.splitter import SplitCoordinator

    pool = WorkerPool(tmp_path_factory.mktemp("workers"))
    workers = {d.name: pool.start(d.name) for d in split_plan.devices}
    with SplitCoordinator(split_plan, addresses(workers), timeout=60) as coordinator:
        coordinator.deploy()
    yield workers
    pool.stop_all()


@pytest.fixture
def with_victim(split_plan, shared_workers, worker_factory):
    """The shared workers with one device served by a fresh worker process that a test may kill."""

    def make(device: str) -> tuple[dict[str, WorkerProcess], WorkerProcess]:
        victim = worker_factory(device)
        return {**shared_workers, device: victim}, victim

    return make


def addresses(workers: dict[str, WorkerProcess]) -> dict[str, str]:
    return {name: w.address for name, w in workers.items()}
