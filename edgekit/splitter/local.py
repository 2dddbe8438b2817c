"""Worker processes on this machine's loopback, for the demo, benchmarks and tests.

Each worker is a separate ``python -m edgekit worker --port 0`` process (its own interpreter, its own
runtime); the port it bound is read from the line it prints when it is ready.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import WorkerError

_READY = re.compile(r"listening on (\S+:\d+)")


@dataclass
class LocalWorker:
    name: str
    proc: subprocess.Popen
    address: str
    workdir: Path

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            stop_process(self.proc, sig, wait)


def stop_process(proc: subprocess.Popen, sig: int, wait: float) -> None:
    """``sig`` to a running ``proc``, then SIGKILL if it has not exited after ``wait`` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_local_worker(
    name: str,
    workdir: str | Path,
    *extra: str,
    python: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    prefix: Sequence[str] = (),
    ready_seconds: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> LocalWorker:
    """``prefix`` runs the worker under another command, e.g. ``ip netns exec NS`` for a separate network;
    ``env`` adds variables to its environment (e.g. where its energy meter is)."""
    command = [*prefix, python or sys.executable, "-m", "edgekit", "worker", "--host", host, "--port", str(port)]
    command += ["--workdir", str(workdir)]
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*command, "--name", name, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    address, last = _wait_ready(proc, time.monotonic() + ready_seconds)
    if address:
        return LocalWorker(name, proc, address, Path(workdir))
    # Asked before the kill: after it, a silent live worker would read as one that exited.
    why = last or ("no output" if proc.poll() is not None else f"no ready line within {ready_seconds:g} s")
    proc.kill()
    raise WorkerError(name, f"did not start ({why}); run `edgekit worker` by hand to see why")


def _wait_ready(proc: subprocess.Popen, deadline: float) -> tuple[str | None, str]:
    """The address from the worker's ready line, and the last line it printed, reading until ``deadline``.

    Reads the pipe's descriptor through a selector, not ``readline()``: a worker that is alive but never
    prints (a fleet benchmark run once blocked there 20 minutes on a worker that was serving) must not block
    its caller past the deadline.
    """
    fd, pending, last = proc.stdout.fileno(), b"", ""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(timeout=min(left, 1.0)):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:  # end of file: the worker exited
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").strip()
                last = line or last
                match = _READY.search(line)
                if match:
                    return match.group(1), last
    return None, last


class LocalWorkers:
    """``with LocalWorkers(["pi-a", "pi-b"]) as workers: workers.addresses`` -> {name: "127.0.0.1:port"}."""

    def __init__(self, names: list[str], root: str | Path | None = None, threads: int | None = 1):
        """``threads``: runtime threads per worker. One by default: the workers share this machine's cores,
        and runtimes that spin their thread pools (ONNX Runtime) would otherwise starve each other."""
        self.names = names
        self.threads = threads
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="edgekit-workers-")
        self.root = Path(root or self._tmp.name)
        self.workers: dict[str, LocalWorker] = {}

    def __enter__(self) -> LocalWorkers:
        try:
            for name in self.names:
                extra = ("--threads", str(self.threads)) if self.threads else ()
                self.workers[name] = start_local_worker(name, self.root / name, *extra)
        except BaseException:
            self.close()
            raise
        return self

    @property
    def addresses(self) -> dict[str, str]:
        return {name: w.address for name, w in self.workers.items()}

    def close(self) -> None:
        for w in self.workers.values():
            w.stop()
        if self._tmp:
            self._tmp.cleanup()

    def __exit__(self, *exc) -> None:
        self.close()
