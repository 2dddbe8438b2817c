"""An arm64 (Raspberry Pi 5 / Jetson class) Python 3.11 device environment on an x86 machine, run through qemu-user.

Everything lives under ``build/arm64/`` and nothing outside it changes: apt runs with its own state directory (no
``dpkg --add-architecture``, no package installed), qemu-user-static is unpacked from its .deb rather than
installed (so no binfmt handler can be registered), Debian's arm64 python3.11 and its libraries are unpacked into
a sysroot, and edgekit's runtime dependencies come from cp311 aarch64 wheels unpacked into a site directory.

The interpreter runs as ``qemu-aarch64-static -cpu cortex-a76 -L SYSROOT SYSROOT/usr/bin/python3.11``, inside
``unshare -m`` with a Raspberry Pi 5's cpuinfo bind-mounted over /proc/cpuinfo: ONNX Runtime reads the CPU
topology from that file at import and crashes on the host's x86 one. The emulated CPU is a Cortex-A76, the Pi 5's,
so the runtimes pick the kernels they would pick on the device (NEON and dot-product, no SVE or i8mm).

Each step is cached behind a stamp file that holds the digest of what the step was built from; a step is built
in a ``.partial`` directory and renamed into place only after its own check passed, so an interrupted build is
redone, never used. ``python -m tools.arm64.environment build`` builds; ``... python -c CODE`` runs the
emulated interpreter.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
CPUINFO = HERE / "cpuinfo-raspberry-pi-5.txt"
CPU = "cortex-a76"  # the Raspberry Pi 5's core; qemu's default ("max") would offer SVE and i8mm the Pi lacks

# Debian bookworm's arm64 python3.11 and the shared libraries it and the wheels load (DEVICES.md's probe).
DEBIAN_PACKAGES = (
    "python3.11", "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "libc6", "libexpat1", "zlib1g", "libssl3", "libffi8", "libbz2-1.0", "liblzma5", "libgcc-s1", "libstdc++6",
    "libsqlite3-0", "libuuid1", "libncursesw6", "libtinfo6", "libreadline8", "libdb5.3", "libcrypt1", "libnsl2",
    "libtirpc3", "media-types",
)  # fmt: skip
QEMU_PACKAGE = "qemu-user-static"
PYTHON_VERSION = "3.11"
# What every built site must import under emulation (the check that makes the site step count as done).
SITE_IMPORTS = ("numpy", "onnxruntime", "ai_edge_litert.interpreter", "grpc", "yaml", "google.protobuf", "rich")

# What the build and the runs need from the host (a Debian-like x86 machine, root for unshare and mount).
HOST_TOOLS = ("apt-get", "dpkg", "dpkg-deb", "unshare", "mount", "sh")
APT_TIMEOUT = 600
PIP_TIMEOUT = 900
CHECK_TIMEOUT = 300


class BuildError(RuntimeError):
    """A step of the arm64 environment could not be built; the message names the step and the command."""


def _run(command: Sequence[str], timeout: float, what: str, **kwargs) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: `{' '.join(command[:4])} ...` took longer than {timeout:.0f} s") from None
    except FileNotFoundError as exc:
        raise BuildError(f"{what}: {exc.filename} is not installed") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{what}: `{' '.join(command[:6])} ...` exited with {proc.returncode}:\n{tail}")
    return proc


def _digest(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


def source_digest(package: Path = ROOT / "edgekit") -> str:
    """Every file of the package (code, .proto, stubs), by path and content, caches excluded."""
    parts: list[str | bytes] = []
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            parts += [str(path.relative_to(package.parent)), path.read_bytes()]
    return _digest(*parts)


def wheel_platforms(glibc: tuple[int, int]) -> list[str]:
    """pip's --platform list for a device with this glibc: every manylinux tag it can load (pip does not widen
    an explicit --platform by itself, and ai-edge-litert's wheel is manylinux_2_27, onnxruntime's 2_28)."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_aarch64" for m in range(17, minor + 1)]
    return ["manylinux2014_aarch64", *tags]


@dataclass(frozen=True)
class Step:
    """One cached part of the environment: ``path`` is complete when ``stamp`` holds ``key``."""

    name: str
    path: Path
    key: str

    @property
    def stamp(self) -> Path:
        return self.path.with_name(f"{self.path.name}.done")

    @property
    def partial(self) -> Path:
        return self.path.with_name(f"{self.path.name}.partial")

    def done(self) -> bool:
        return self.path.is_dir() and self.stamp.is_file() and self.stamp.read_text() == self.key

    def start(self) -> Path:
        """A fresh, empty .partial directory; the old result and stamp are gone (a half-done step never counts)."""
        self.stamp.unlink(missing_ok=True)
        for path in (self.partial, self.path):
            if path.exists():
                shutil.rmtree(path)
        self.partial.mkdir(parents=True)
        return self.partial

    def finish(self) -> None:
        self.partial.rename(self.path)
        self.stamp.write_text(self.key)


@dataclass(frozen=True)
class Arm64Environment:
    root: Path = ROOT / "build" / "arm64"

    # -- layout ---------------------------------------------------------------------------------------------
    @property
    def apt_dir(self) -> Path:
        return self.root / "apt"

    @property
    def qemu(self) -> Path:
        return self.root / "qemu" / "usr" / "bin" / "qemu-aarch64-static"

    @property
    def sysroot(self) -> Path:
        return self.root / "sysroot"

    @property
    def python(self) -> Path:
        return self.sysroot / "usr" / "bin" / f"python{PYTHON_VERSION}"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def source(self) -> Path:
        return self.root / "src"

    @property
    def shim(self) -> Path:
        """An executable that behaves like the device's ``python3`` (for tools that take an interpreter path)."""
        return self.root / "bin" / "python3"

    def steps(self) -> dict[str, Step]:
        packages = " ".join(DEBIAN_PACKAGES)
        return {
            "apt": Step("apt", self.apt_dir, _digest("apt", packages, QEMU_PACKAGE, _host_arch())),
            "qemu": Step("qemu", self.root / "qemu", _digest("qemu", QEMU_PACKAGE, _host_arch())),
            "sysroot": Step("sysroot", self.sysroot, _digest("sysroot", packages)),
            "site": Step("site", self.site, _digest("site", REQUIREMENTS.read_text(), CPUINFO.read_text())),
            "source": Step("source", self.source, source_digest()),
        }

    # -- running the emulated interpreter -------------------------------------------------------------------
    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The emulated process's environment: the site and edgekit copy only, byte code kept under build/."""
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TERM", "TMPDIR")}
        return {
            **keep,
            "PYTHONPATH": f"{self.source}{os.pathsep}{self.site}",
            "PYTHONNOUSERSITE": "1",
            # an absolute prefix outside the sysroot: byte code of the sysroot's stdlib lands here, not in the
            # host's /usr/lib/python3.11 (qemu -L only redirects paths that exist in the sysroot)
            "PYTHONPYCACHEPREFIX": str(self.root / "pycache"),
            **(extra or {}),
        }

    def command(self, *args: str) -> list[str]:
        """argv that runs ``python3.11 -S -P ARGS`` on the emulated Cortex-A76 with the Pi's /proc/cpuinfo.

        ``-S -P``: no site directories and no working directory on sys.path, so only the site built here and
        the edgekit copy are importable, wherever the caller runs it from."""
        bind = 'mount --bind "$0" /proc/cpuinfo && exec "$@"'
        emulated = [str(self.qemu), "-cpu", CPU, "-L", str(self.sysroot), str(self.python), "-S", "-P", *args]
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", bind, str(CPUINFO), *emulated]

    def run(self, *args: str, timeout: float, cwd: str | Path = "/", **kwargs) -> subprocess.CompletedProcess:
        """Run the emulated interpreter to completion (``timeout`` seconds at most), output captured."""
        kwargs.setdefault("env", self.env())
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd, **kwargs)

    # -- building -------------------------------------------------------------------------------------------
    def build(self) -> Arm64Environment:
        """Build (or reuse) every step; idempotent, and cheap when nothing changed."""
        missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
        if missing:
            raise BuildError(f"this machine lacks {', '.join(missing)} (Debian: apt-get install dpkg util-linux mount)")
        self.root.mkdir(parents=True, exist_ok=True)
        # two test sessions (or worktrees sharing a build dir) must not build the same step at once
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._build_steps()
        return self

    def _build_steps(self) -> None:
        steps = self.steps()
        for name, builder in (("apt", self._apt_index), ("qemu", self._qemu), ("sysroot", self._sysroot),
                              ("site", self._site), ("source", self._source)):  # fmt: skip
            step = steps[name]
            if step.done():
                continue
            log.info("arm64 environment: building %s", name)
            builder(step.start())
            step.finish()
        self._write_shim()

    def _apt(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        apt = self.apt_dir if self.steps()["apt"].done() else self.steps()["apt"].partial
        options = [
            f"-oDir::State::Lists={apt / 'lists'}", f"-oDir::State::status={apt / 'status'}",
            f"-oDir::Cache={apt / 'cache'}", f"-oAPT::Architectures::={_host_arch()}", "-oAPT::Architectures::=arm64",
            "-oAPT::Sandbox::User=root", "-oDebug::NoLocking=1",
        ]  # fmt: skip
        return _run(["apt-get", "-q", *options, *args], APT_TIMEOUT, f"apt-get {args[0]}", cwd=cwd)

    def _apt_index(self, partial: Path) -> None:
        for sub in ("lists/partial", "cache/archives/partial"):
            (partial / sub).mkdir(parents=True)
        (partial / "status").touch()
        self._apt("update")

    def _download(self, packages: Sequence[str], into: Path) -> list[Path]:
        """apt-get download; with a stale index (a point release removed a version) refresh it once."""
        into.mkdir(parents=True, exist_ok=True)
        try:
            self._apt("download", *packages, cwd=into)
        except BuildError:
            self._apt("update")
            self._apt("download", *packages, cwd=into)
        return sorted(into.glob("*.deb"))

    def _qemu(self, partial: Path) -> None:
        debs = self._download([f"{QEMU_PACKAGE}:{_host_arch()}"], self.root / "debs-qemu.partial")
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(partial)], APT_TIMEOUT, f"unpacking {deb.name}")
        shutil.rmtree(self.root / "debs-qemu.partial")
        for other in (partial / "usr/bin").glob("qemu-*"):  # the package carries every target; keep one
            if other.name != "qemu-aarch64-static":
                other.unlink()
        _run([str(partial / "usr/bin/qemu-aarch64-static"), "--version"], 60, "qemu-aarch64-static --version")

    def _sysroot(self, partial: Path) -> None:
        debs_dir = self.root / "debs-arm64.partial"
        shutil.rmtree(debs_dir, ignore_errors=True)
        debs = self._download([f"{p}:arm64" if p != "media-types" else p for p in DEBIAN_PACKAGES], debs_dir)
        if len(debs) != len(DEBIAN_PACKAGES):
            raise BuildError(f"sysroot: apt-get download gave {len(debs)} packages, wanted {len(DEBIAN_PACKAGES)}")
        versions = []
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(partial)], APT_TIMEOUT, f"unpacking {deb.name}")
            versions.append(deb.name)
        (partial / "edgekit-packages.txt").write_text("\n".join(versions) + "\n")
        shutil.rmtree(debs_dir)
        python = partial / "usr" / "bin" / f"python{PYTHON_VERSION}"
        check = [str(self.qemu), "-cpu", CPU, "-L", str(partial), str(python), "-S", "-c",
                 "import platform, ssl, ctypes, sqlite3; print(platform.machine())"]  # fmt: skip
        machine = _run(check, CHECK_TIMEOUT, "sysroot check", env=self.env()).stdout.strip()
        if machine != "aarch64":
            raise BuildError(f"sysroot check: the emulated interpreter reports machine {machine!r}, not aarch64")

    def _site(self, partial: Path) -> None:
        wheels = self.root / "wheels"
        shutil.rmtree(wheels, ignore_errors=True)
        platforms = [arg for tag in wheel_platforms(self.glibc()) for arg in ("--platform", tag)]
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
              "--only-binary=:all:", *platforms, "--python-version", PYTHON_VERSION, "--implementation", "cp",
              "--abi", f"cp{PYTHON_VERSION.replace('.', '')}", "-d", str(wheels), "-r", str(REQUIREMENTS)],
             PIP_TIMEOUT, "pip download (aarch64 wheels)")  # fmt: skip
        for wheel in sorted(wheels.glob("*.whl")):
            _unpack_wheel(wheel, partial)
        shutil.rmtree(wheels)
        code = "import " + ", ".join(SITE_IMPORTS) + "; import numpy; print(numpy.__version__)"
        env = {**self.env(), "PYTHONPATH": str(partial)}
        proc = subprocess.run(self.command("-c", code), capture_output=True, text=True, timeout=CHECK_TIMEOUT,
                              env=env, cwd="/")  # fmt: skip
        if proc.returncode != 0:
            raise BuildError(f"site check: importing {', '.join(SITE_IMPORTS)} under emulation failed "
                             f"(exit {proc.returncode}): {proc.stderr.strip()[-800:]}")  # fmt: skip

    def _source(self, partial: Path) -> None:
        shutil.copytree(ROOT / "edgekit", partial / "edgekit", ignore=shutil.ignore_patterns("__pycache__"))

    def glibc(self) -> tuple[int, int]:
        """The sysroot's glibc version (major, minor), from the libc6 package it was unpacked from."""
        for name in (self.sysroot / "edgekit-packages.txt").read_text().split():
            if name.startswith("libc6_"):
                major, minor = name.split("_")[1].split("-")[0].split(".")[:2]
                return int(major), int(minor)
        raise BuildError("sysroot has no libc6 package; rebuild it (rm -r build/arm64/sysroot)")

    def _write_shim(self) -> None:
        """``bin/python3``: the emulated interpreter as one executable, for callers that take a python path."""
        env = self.env()
        exports = "".join(f"export {k}='{v}'\n" for k, v in env.items() if k.startswith("PYTHON"))
        text = "#!/bin/sh\n# generated by tools/arm64/environment.py\n" + exports
        text += "exec " + " ".join(f"'{a}'" for a in self.command()) + ' "$@"\n'
        self.shim.parent.mkdir(parents=True, exist_ok=True)
        if not (self.shim.is_file() and self.shim.read_text() == text):
            tmp = self.shim.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o755)
            tmp.replace(self.shim)


@functools.cache
def _host_arch() -> str:
    return _run(["dpkg", "--print-architecture"], 30, "dpkg --print-architecture").stdout.strip()


def _unpack_wheel(wheel: Path, site: Path) -> None:
    """A wheel is a zip of its install tree; ``NAME.data/{purelib,platlib}`` goes to the site too."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise BuildError(f"{wheel.name} has an unsafe member path {member!r}")
        archive.extractall(site)
    for data in site.glob("*.data"):
        for lib in ("purelib", "platlib"):
            if (data / lib).is_dir():
                shutil.copytree(data / lib, site, dirs_exist_ok=True)
        shutil.rmtree(data)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.arm64.environment", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build or reuse build/arm64 (needs root for unshare and apt's network)")
    python = sub.add_parser("python", help="run the emulated python3.11 with these arguments")
    python.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        env = Arm64Environment().build()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "python":
        return subprocess.run(env.command(*args.args), env=env.env(), timeout=3600).returncode
    print(f"arm64 environment ready: {env.shim}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
