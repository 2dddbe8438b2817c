"""An emulated fleet on one Linux machine, for tests and benchmarks (root, iproute2, cgroup v1).

Each device of a ``devices.yaml`` with ``emulate: {cpus, link_mbps, memory}`` becomes a network namespace on one
bridge (``SUBNET.0/24``: the host is ``.1``, device ``i`` is ``.(i + 2)``), its veth shaped with ``tc tbf`` at the
link rate in both directions (this kernel has no ``netem``: latency is what the rate and the real round trip
give, nothing is faked), and a cgroup v1 ``cpu`` group (``cfs_quota_us`` over a 10 ms period: short, so a
millisecond inference is throttled evenly rather than in 100 ms bursts) plus a ``memory`` group with the limit.
A process runs on a device through :meth:`EmulatedHost.prefix`, which puts a shell into both groups and then
``exec``s the command inside the namespace, so the worker and everything it starts are held to the quota.

Everything carries the fleet's tag: namespaces ``TAG-i``, links ``TAGhi`` / ``TAGni`` / ``TAGbr``, cgroups
``TAG-i``. Starting a fleet first removes whatever a crashed run with the same tag left (its processes are
killed by the pids listed in its own cgroups and namespaces, then the groups, links and namespaces go), and
closing it removes everything it made.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import ConfigError
from edgekit.splitter.devices import EmulateSpec

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "memory")
PERIOD_US = 10_000
_TAG = re.compile(r"[a-z]{1,6}")


@dataclass(frozen=True)
class EmulatedHost:
    """One emulated device: where it is on the network and which groups hold its processes."""

    name: str
    namespace: str
    address: str  # inside the namespace, on the fleet's bridge
    host_if: str  # the bridge side of its veth
    cgroup: str  # the group's name under each controller
    spec: EmulateSpec

    def prefix(self) -> tuple[str, ...]:
        """A command prefix that runs what follows inside the namespace and the device's cgroups."""
        # The groups are joined before entering the namespace: `ip netns exec` mounts a fresh /sys, without the
        # cgroup hierarchies. Membership is inherited by ip and by what it execs.
        joins = " && ".join(f"echo $$ > {CGROUP_ROOT / c / self.cgroup / 'cgroup.procs'}" for c in CONTROLLERS)
        script = f'{joins} && exec ip netns exec {self.namespace} "$@"'
        return ("sh", "-c", script, f"emulated-{self.name}")

    def run(self, *command: str, timeout: float = 60.0, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix(), *command], timeout=timeout, **kwargs)

    def cpu_stat(self) -> dict[str, int]:
        """The cpu group's ``cpu.stat`` (nr_periods, nr_throttled, throttled_time ...)."""
        text = (CGROUP_ROOT / "cpu" / self.cgroup / "cpu.stat").read_text()
        return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line.strip())}


class EmulatedFleet:
    """``with EmulatedFleet([("pi-a", EmulateSpec(0.4, 100, 512e6)), ...]) as fleet: fleet.hosts``."""

    def __init__(
        self,
        devices: Sequence[tuple[str, EmulateSpec]],
        tag: str = "ef",
        subnet: str = "10.242.0",
        period_us: int = PERIOD_US,
        shares: int = 1024,
    ):
        """``shares``: the cpu groups' weight against everything else on the machine (1024 = one ordinary
        process); above it, a device gets its quota even while other work keeps the cores busy."""
        if not _TAG.fullmatch(tag):
            raise ConfigError(f"emulated fleet tag {tag!r}: 1-6 lowercase letters (it names links of 15 characters)")
        if not re.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}", subnet):
            raise ConfigError(f"emulated fleet subnet {subnet!r}: three octets, e.g. 10.242.0")
        if not 0 < len(devices) <= 200:
            raise ConfigError(f"an emulated fleet has 1..200 devices, not {len(devices)}")
        if os.geteuid() != 0:
            raise ConfigError("an emulated fleet needs root (network namespaces, tc, cgroups)")
        self.devices = list(devices)
        self.tag, self.subnet, self.period_us, self.shares = tag, subnet, period_us, shares
        self.bridge = f"{tag}br"
        self.host_address = f"{subnet}.1"
        self.hosts: list[EmulatedHost] = []

    def __enter__(self) -> EmulatedFleet:
        remove_stale(self.tag)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def host(self, name: str) -> EmulatedHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise ConfigError(f"no emulated device {name!r} (devices: {', '.join(h.name for h in self.hosts)})")

    def _build(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, (name, spec) in enumerate(self.devices):
            host = EmulatedHost(name, f"{self.tag}-{i}", f"{self.subnet}.{i + 2}", f"{self.tag}h{i}",
                                f"{self.tag}-{i}", spec)  # fmt: skip
            ns_if = f"{self.tag}n{i}"
            _ip("netns", "add", host.namespace)
            self.hosts.append(host)  # from here on close() removes it
            _ip("link", "add", host.host_if, "type", "veth", "peer", "name", ns_if)
            _ip("link", "set", host.host_if, "master", self.bridge)
            _ip("link", "set", host.host_if, "up")
            _ip("link", "set", ns_if, "netns", host.namespace)
            inside = ("netns", "exec", host.namespace)
            _ip(*inside, "ip", "addr", "add", f"{host.address}/24", "dev", ns_if)
            _ip(*inside, "ip", "link", "set", ns_if, "up")
            _ip(*inside, "ip", "link", "set", "lo", "up")
            # Both directions: what the device sends (its veth's egress) and what it receives (the bridge side's).
            _shape(("tc",), host.host_if, spec.link_mbps)
            _shape(("ip", *inside, "tc"), ns_if, spec.link_mbps)
            self._cgroups(host)
            log.info("emulated %s: %s in %s, %.2f cpu, %g Mbit/s, %d MB", name, host.address, host.namespace,
                     spec.cpus, spec.link_mbps, spec.memory_bytes // 1_000_000)  # fmt: skip

    def _cgroups(self, host: EmulatedHost) -> None:
        cpu = CGROUP_ROOT / "cpu" / host.cgroup
        cpu.mkdir()
        (cpu / "cpu.cfs_period_us").write_text(str(self.period_us))
        (cpu / "cpu.cfs_quota_us").write_text(str(max(1000, round(host.spec.cpus * self.period_us))))
        (cpu / "cpu.shares").write_text(str(self.shares))
        memory = CGROUP_ROOT / "memory" / host.cgroup
        memory.mkdir()
        (memory / "memory.limit_in_bytes").write_text(str(host.spec.memory_bytes))

    def close(self) -> None:
        for host in self.hosts:
            _kill_group(host.cgroup, host.namespace)
            subprocess.run(["ip", "link", "del", host.host_if], capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=30)
            for controller in CONTROLLERS:
                _rmdir(CGROUP_ROOT / controller / host.cgroup)
        self.hosts = []
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)


def remove_stale(tag: str) -> list[str]:
    """Remove what an earlier (crashed) fleet with ``tag`` left: processes, cgroups, links, namespaces."""
    removed = []
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    namespaces = sorted({m.group(0) for m in re.finditer(rf"^{tag}-\d+\b", listing, re.M)})
    groups = sorted(
        {p.name for c in CONTROLLERS for p in (CGROUP_ROOT / c).glob(f"{tag}-*") if re.fullmatch(rf"{tag}-\d+", p.name)}
    )
    for name in sorted(set(namespaces) | set(groups)):
        _kill_group(name, name if name in namespaces else None)
        for controller in CONTROLLERS:
            if _rmdir(CGROUP_ROOT / controller / name):
                removed.append(f"cgroup {controller}/{name}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30).stdout
    for match in re.finditer(rf"^\d+: ({tag}(?:h\d+|br))[@:]", links, re.M):
        subprocess.run(["ip", "link", "del", match.group(1)], capture_output=True, timeout=30)
        removed.append(f"link {match.group(1)}")
    for ns in namespaces:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        removed.append(f"netns {ns}")
    if removed:
        log.warning("removed what an earlier emulated fleet %r left: %s", tag, ", ".join(removed))
    return removed


def leftovers(tag: str) -> list[str]:
    """What of a fleet with ``tag`` still exists (empty after a clean teardown)."""
    found = [f"cgroup {c}/{p.name}" for c in CONTROLLERS for p in (CGROUP_ROOT / c).glob(f"{tag}-*")]
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    found += [f"netns {m.group(0)}" for m in re.finditer(rf"^{tag}-\d+\b", listing, re.M)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30).stdout
    found += [f"link {m.group(1)}" for m in re.finditer(rf"^\d+: ({tag}(?:h\d+|n\d+|br))[@:]", links, re.M)]
    return found


def _pids(cgroup: str, namespace: str | None) -> set[int]:
    pids: set[int] = set()
    for controller in CONTROLLERS:
        procs = CGROUP_ROOT / controller / cgroup / "cgroup.procs"
        if procs.is_file():
            pids.update(int(p) for p in procs.read_text().split())
    if namespace:
        out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=30).stdout
        pids.update(int(p) for p in out.split())
    return pids


def _kill_group(cgroup: str, namespace: str | None, seconds: float = 10.0) -> None:
    """SIGKILL the processes of one emulated device (found by its own cgroups and namespace), and wait."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pids = _pids(cgroup, namespace)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    log.warning("processes of emulated device %s still alive after %g s", cgroup, seconds)


def _rmdir(path: Path) -> bool:
    if not path.is_dir():
        return False
    for _ in range(100):  # a killed process leaves its group a moment later
        try:
            path.rmdir()
            return True
        except OSError:
            time.sleep(0.05)
    log.warning("could not remove %s", path)
    return False


def _shape(tc: tuple[str, ...], interface: str, mbps: float) -> None:
    # tbf needs a bucket of at least one timer tick of traffic; 1/100 s of the rate, 16 KB at least.
    burst = max(16_000, int(mbps * 1e6 / 8 / 100))
    subprocess.run([*tc, "qdisc", "replace", "dev", interface, "root", "tbf", "rate", f"{mbps:g}mbit",
                    "burst", str(burst), "latency", "50ms"], check=True, capture_output=True, text=True,
                   timeout=30)  # fmt: skip


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode:
        raise ConfigError(f"ip {' '.join(args)}: {result.stderr.strip() or 'failed'}")
