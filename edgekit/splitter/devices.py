"""The devices a split runs on, read from ``devices.yaml``.

Each device declares a name, the worker's address, a memory budget for its shard(s), how fast it is
(``gflops`` declared, or ``profile:`` a ``device.json`` written by ``edgekit profile-device`` on that
device, whose measured matmul throughput and available memory fill in what is not declared), and which
bundle format its runtime loads (``format:`` or a ``target:`` preset). ``emulate: {cpus: 0.4, link_mbps: 100,
memory: 512MB}`` describes the device for an emulated fleet on one machine (``emulate.py``): a CPU quota in
cores, its link's rate and a memory limit. ``runtimes:`` lists other formats it can also load, which makes
it a candidate for another device's shard as a replica (``split --replicas``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import ConfigError, MissingDependencyError
from edgekit.formats import get_format
from edgekit.targets import get_target

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
AUTO = "auto"  # an address found by discovery (edgekit.fleet.discovery) when the plan runs
_KEYS = {
    "name",
    "address",
    "memory",
    "memory_mb",
    "gflops",
    "profile",
    "format",
    "target",
    "link_mbps",
    "emulate",
    "runtimes",
}
_EMULATE_KEYS = {"cpus", "link_mbps", "memory"}


@dataclass(frozen=True)
class EmulateSpec:
    """How a device is emulated on this machine: CPU quota (cores), link rate, memory limit."""

    cpus: float
    link_mbps: float
    memory_bytes: int

    @classmethod
    def parse(cls, entry: Any, where: str) -> EmulateSpec:
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} emulate: expected {{cpus: 0.4, link_mbps: 100, memory: 512MB}}")
        unknown = sorted(set(entry) - _EMULATE_KEYS)
        if unknown:
            raise ConfigError(
                f"{where} emulate: unknown key {unknown[0]!r} (known: {', '.join(sorted(_EMULATE_KEYS))})"
            )
        missing = sorted(_EMULATE_KEYS - set(entry))
        if missing:
            raise ConfigError(f"{where} emulate: give {missing[0]} as well (cpus, link_mbps and memory)")
        numbers = {}
        for key in ("cpus", "link_mbps"):
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{where} emulate: {key} must be a positive number, got {value!r}")
            numbers[key] = float(value)
        if numbers["cpus"] < 0.01:
            raise ConfigError(f"{where} emulate: cpus {numbers['cpus']:g} is below the 0.01 core a cgroup can give")
        memory = parse_size(entry["memory"], f"{where} emulate memory")
        if memory < 16 * 1000**2:
            raise ConfigError(f"{where} emulate: memory {memory} bytes is too small for a worker (16MB at least)")
        return cls(numbers["cpus"], numbers["link_mbps"], memory)


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    address: str | None
    memory_bytes: int
    gflops: float
    format: str
    link_mbps: float | None = None  # network bandwidth to the coordinator, for the latency estimate
    source: str = "declared"  # or the device.json it was measured in
    emulate: EmulateSpec | None = None  # how an emulated fleet on one machine stands in for it
    runtimes: tuple[str, ...] = ()  # formats it loads besides its own (replicas of other devices' shards)

    def to_json(self) -> dict[str, Any]:
        data = {**asdict(self), "runtimes": list(self.runtimes)}
        if self.emulate is None:
            data.pop("emulate")  # plans written before emulation read back the same
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceSpec:
        values = {k: data.get(k) for k in cls.__dataclass_fields__ if k in data}
        if isinstance(values.get("emulate"), dict):
            values["emulate"] = EmulateSpec(**values["emulate"])
        values["runtimes"] = tuple(values.get("runtimes") or ())
        return cls(**values)


def parse_size(value: Any, what: str) -> int:
    """Bytes from an int or a string such as ``512MB`` or ``1.5 GiB``."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a size such as 512MB, got {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmg]i?b|b)?\s*", str(value).lower())
    if not match:
        raise ConfigError(f"{what}: cannot read {value!r} as a size (examples: 512MB, 1.5GiB, 2000000)")
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])


def load_devices(path: str | Path) -> tuple[DeviceSpec, ...]:
    """Read ``devices.yaml`` (a ``devices:`` list, or a bare list); relative ``profile:`` paths are next to it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"devices file {path} does not exist")
    try:
        import yaml
    except ImportError:
        raise MissingDependencyError("pyyaml", "split", "reading devices.yaml") from None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    entries = data.get("devices") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected a non-empty list under 'devices:'")
    devices = tuple(_device(entry, i, path.parent, path) for i, entry in enumerate(entries))
    names = [d.name for d in devices]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"{path}: device name {duplicate!r} appears twice")
    return devices


def _device(entry: Any, index: int, base: Path, path: Path) -> DeviceSpec:
    if not isinstance(entry, dict) or "name" not in entry:
        raise ConfigError(f"{path}: device #{index + 1} needs at least a name")
    name = str(entry["name"])
    where = f"{path}: device {name}"
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    profile = read_profile(base / entry["profile"], where) if entry.get("profile") else {}
    if "memory" in entry:
        memory = parse_size(entry["memory"], f"{where} memory")
    elif "memory_mb" in entry:
        memory = int(float(entry["memory_mb"]) * 1000**2)
    elif profile.get("memory_available_bytes"):
        memory = int(profile["memory_available_bytes"])
    else:
        raise ConfigError(f"{where}: give memory (e.g. 512MB) or a profile: device.json that measured it")
    gflops = entry.get("gflops", profile.get("matmul_gflops"))
    if not isinstance(gflops, (int, float)) or gflops <= 0:
        raise ConfigError(f"{where}: give gflops (a positive number) or a profile: device.json")
    if "target" in entry:
        fmt = get_target(str(entry["target"])).format
    else:
        fmt = get_format(str(entry.get("format", "onnx"))).name
    emulate = EmulateSpec.parse(entry["emulate"], where) if "emulate" in entry else None
    link = entry.get("link_mbps") or (emulate.link_mbps if emulate else None)  # an emulated link is that fast
    runtimes = entry.get("runtimes") or []
    if not isinstance(runtimes, list):
        raise ConfigError(f"{where}: runtimes must be a list of formats, e.g. [onnx, tflite]")
    address = entry.get("address")
    if address is not None and address != AUTO and not re.fullmatch(r"[^\s:]+:\d{1,5}", str(address)):
        raise ConfigError(f"{where}: address {address!r} is not host:port (or auto: found over mDNS)")
    return DeviceSpec(
        name=name,
        address=str(address) if address is not None else None,
        memory_bytes=memory,
        gflops=float(gflops),
        format=fmt,
        link_mbps=float(link) if link else None,
        source=str(entry["profile"]) if profile else "declared",
        emulate=emulate,
        runtimes=tuple(dict.fromkeys(get_format(str(r)).name for r in runtimes if get_format(str(r)).name != fmt)),
    )


def read_profile(path: Path, where: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read profile {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != "edgekit.device/1":
        raise ConfigError(f"{where}: {path} is not a device.json from `edgekit profile-device`")
    return data
