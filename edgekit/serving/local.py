"""``edgekit serve`` as a process on this machine's loopback, for benchmarks and tests.

The process binds free ports (``--port 0 --http-port 0``) and prints them in its ready line, read here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import ConfigError
from edgekit.splitter.local import stop_process

_READY = re.compile(r"model (\S+) .* on gRPC (\S+):(\d+)(?:, HTTP on \S+:(\d+))?")


@dataclass
class LocalServer:
    proc: subprocess.Popen
    model: str
    host: str
    grpc_port: int
    http_port: int | None

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_address(self) -> str:
        return f"{self.host}:{self.http_port}"

    def stop(self, sig: int = signal.SIGTERM, wait: float = 15.0) -> None:
        stop_process(self.proc, sig, wait)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_local_server(path: str | Path, *extra: str, python: str | None = None, host: str = "127.0.0.1",
                       ready_seconds: float = 120.0, log_file: str | Path | None = None) -> LocalServer:  # fmt: skip
    """Start ``edgekit serve PATH`` (plus ``extra`` options) and wait for its ready line."""
    command = [python or sys.executable, "-m", "edgekit", "serve", str(path), "--host", host, "--port", "0",
               "--http-port", "0", *extra]  # fmt: skip
    err = open(log_file, "w") if log_file else subprocess.DEVNULL  # noqa: SIM115 -- the child keeps it
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    deadline = time.monotonic() + ready_seconds
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = _READY.search(line)
        if match:
            http = int(match.group(4)) if match.group(4) else None
            return LocalServer(proc, match.group(1), match.group(2), int(match.group(3)), http)
        if proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    why = line.strip() or "no output"
    raise ConfigError(f"`edgekit serve {path}` did not start ({why}); run it by hand to see why")
