"""An Android phone over ``adb``: push and pull files, run shell commands, find a tool on the phone.

Every failure becomes one :class:`AdbError` line that says what adb answered (no device, unauthorized,
offline, a command that failed) and what to do. The phone's shell exit status is carried back by echoing it
after the command, because ``adb shell`` on older phones always exits 0.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EdgekitError

log = logging.getLogger(__name__)

REMOTE_ROOT = "/data/local/tmp/edgekit"  # writable by the shell user on every phone, cleared by us only
_STATUS = "__edgekit_status="


class AdbError(EdgekitError):
    exit_code = 2


@dataclass(frozen=True)
class ShellResult:
    status: int
    stdout: str
    stderr: str


class AdbDevice:
    """One phone, by serial (or the only one attached when ``serial`` is None)."""

    def __init__(self, command: str = "adb", serial: str | None = None):
        self.command = command
        self.serial = serial

    @property
    def label(self) -> str:
        return f"adb:{self.serial}" if self.serial else "adb"

    def _adb(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        if shutil.which(self.command) is None and not Path(self.command).is_file():
            raise AdbError(f"{self.command!r} not found: install Android platform-tools (adb) or set EDGEKIT_ADB")
        argv = [self.command, *(["-s", self.serial] if self.serial else []), *args]
        log.debug("adb: %s", shlex.join(argv))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AdbError(f"{self.label}: `adb {args[0]}` did not finish within {timeout:g} s") from None
        if proc.returncode != 0:
            raise AdbError(f"{self.label}: `adb {args[0]}` failed: {_first_line(proc.stderr or proc.stdout)}"
                           f"{_hint(proc.stderr or proc.stdout)}")  # fmt: skip
        return proc

    def shell(self, command: str, timeout: float = 60.0, check: bool = True) -> ShellResult:
        """Run ``command`` in the phone's shell; its exit status is read back from the output."""
        proc = self._adb("shell", f"{command}; echo {_STATUS}$?", timeout=timeout)
        body, _, tail = proc.stdout.rpartition(_STATUS)
        try:
            status = int(tail.strip().splitlines()[0])
        except (ValueError, IndexError):
            raise AdbError(f"{self.label}: the phone's shell gave no exit status for {command!r}") from None
        result = ShellResult(status, body, proc.stderr)
        if check and status != 0:
            raise AdbError(f"{self.label}: {shlex.split(command)[0]} exited {status}: "
                           f"{_telling_line(body + proc.stderr)}")  # fmt: skip
        return result

    def push(self, local: Path, remote: str, timeout: float = 300.0) -> None:
        self._adb("push", str(local), remote, timeout=timeout)

    def pull(self, remote: str, local: Path, timeout: float = 60.0) -> None:
        self._adb("pull", remote, str(local), timeout=timeout)

    def getprop(self, name: str) -> str:
        return self.shell(f"getprop {shlex.quote(name)}").stdout.strip()

    def find_tool(self, names: tuple[str, ...], given: str | None, search: tuple[str, ...]) -> str:
        """The path of a tool on the phone: ``given`` if it is executable there, else the first of ``names`` in
        ``search`` or on the shell's PATH."""
        if given:
            if self.shell(f"test -x {shlex.quote(given)}", check=False).status != 0:
                raise AdbError(f"{self.label}: {given} is not an executable file on the phone: push the tool there "
                               "first, or give its path with --tool")  # fmt: skip
            return given
        for name in names:
            for folder in search:
                path = f"{folder}/{name}"
                if self.shell(f"test -x {shlex.quote(path)}", check=False).status == 0:
                    return path
            found = self.shell(f"command -v {shlex.quote(name)}", check=False)
            if found.status == 0 and found.stdout.strip():
                return found.stdout.strip().splitlines()[0]
        raise AdbError(f"{self.label}: none of {', '.join(names)} found on the phone (looked in "
                       f"{', '.join(search)} and PATH): push it there or give its path with --tool")  # fmt: skip


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no output"


def _telling_line(text: str) -> str:
    """A failed tool's error line (tools log a lot before failing), else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fail" in line.lower()]
    return (errors or lines or ["no output"])[-1]


def _hint(text: str) -> str:
    """What to do about adb's usual complaints."""
    for needle, hint in (
        ("no devices", "; connect the phone and enable USB debugging"),
        ("not found", "; check the serial with `adb devices`"),
        ("unauthorized", "; accept the debugging prompt on the phone"),
        ("offline", "; reconnect the phone (`adb reconnect`)"),
        ("more than one", "; pick one with --on adb:SERIAL"),
    ):
        if needle in text:
            return hint
    return ""
