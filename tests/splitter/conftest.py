"""Worker processes for the split plan built once per session (``split_plan``, in tests/conftest.py: the serving
tests use it too), and the constants it is built from."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekit.splitter.local import LocalWorker, start_local_worker

EDGEKIT = str(Path(sys.executable).with_name("edgekit"))
TINY_SPLIT_CONFIG = {"depth": 2}  # vit_digits: 4 heads of 16, MLP 128
FORMATS = ("onnx", "tflite", "pte")


WorkerProcess = LocalWorker


def start_worker_process(name: str, workdir: Path, *extra: str, executable: str | None = None) -> LocalWorker:
    return start_local_worker(name, workdir, *extra, python=executable)


class WorkerPool:
    """Starts worker processes and stops every one it started."""

    def __init__(self, root: Path):
        self.root = root
        self.started: list[WorkerProcess] = []

    def start(
        self, name: str, *extra: str, executable: str | None = None, workdir: Path | None = None
    ) -> WorkerProcess:
        workdir = workdir or self.root / f"work-{name}-{len(self.started)}"
        w = start_worker_process(name, workdir, *extra, executable=executable)
        self.started.append(w)
        return w

    def stop_all(self) -> None:
        for w in self.started:
            w.stop(signal.SIGKILL)  # a test's workers need no graceful exit (the restart test uses SIGTERM)


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


@pytest.fixture(scope="session")
def fleet(tmp_path_factory, split_plan) -> dict[str, Path]:
    """A fleet CA with an identity per plan device and the coordinator, plus the identities a test refuses:
    another fleet's coordinator, an expired coordinator certificate and a CA-only directory (no certificate)."""
    import datetime as dt

    from edgekit.fleet.ca import CA_CERT, COORDINATOR, IDENTITIES, init_fleet, issue

    root = tmp_path_factory.mktemp("fleet")
    ours = init_fleet(root / "ours")
    dirs = {d.name: issue(ours, d.name) for d in split_plan.devices}
    dirs["coordinator"] = ours / IDENTITIES / COORDINATOR
    dirs["other"] = init_fleet(root / "other") / IDENTITIES / COORDINATOR
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    dirs["expired"] = issue(ours, "old-coordinator", days=1, not_before=past)
    dirs["ca-only"] = root / "ca-only"
    dirs["ca-only"].mkdir()
    (dirs["ca-only"] / CA_CERT).write_bytes((ours / CA_CERT).read_bytes())
    dirs["fleet"] = ours
    token = root / "token"
    token.write_text("s3cret-token-for-tests-0123456789\n")
    wrong = root / "wrong-token"
    wrong.write_text("another-token-for-tests-987654321\n")
    dirs["token"], dirs["wrong-token"] = token, wrong
    return dirs
