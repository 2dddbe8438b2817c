"""The CPU an INT8 graph will run on: its integer dot-product instructions, from /proc/cpuinfo or a device preset.

INT8 recipes depend on them. On x86 without VNNI the int8 GEMMs of ONNX Runtime multiply u8 x s8 pairs with
VPMADDUBSW, whose int16 sums saturate when weights use the whole int8 range (hence 7-bit weights there);
AVX512-VNNI / AVX-VNNI (VPDPBUSD) accumulate in int32 and need no such care. On arm64, ``asimddp`` (SDOT,
ARMv8.2 dot product) and ``i8mm`` (SMMLA) are what make int8 GEMMs clearly faster than float; plain NEON
widens to int16 and multiplies, slower but exact. The ISA class names these cases for the recipe table.

Standard library only: a torch-free device reads its own CPU the same way.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.registry import Registry

# The flags INT8 recipes care about, by architecture, as /proc/cpuinfo spells them.
INT8_FLAGS = {
    "x86_64": ("avx2", "avx512f", "avx512_vnni", "avx_vnni"),
    "arm64": ("asimd", "asimddp", "i8mm"),
}
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "i686": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class CpuFeatures:
    """A CPU as an INT8 recipe sees it: architecture, name, the INT8-relevant flags, and where this came from."""

    arch: str  # "x86_64", "arm64" or what platform.machine() said
    name: str
    flags: frozenset[str]  # only the INT8_FLAGS of the architecture that are present
    source: str  # "host" or "target <preset>"

    @property
    def isa(self) -> str:
        """The recipe table's key: x86-vnni, x86-avx2, x86, arm-i8mm, arm-dotprod, arm-neon or other."""
        if self.arch == "x86_64":
            if self.flags & {"avx512_vnni", "avx_vnni"}:
                return "x86-vnni"
            return "x86-avx2" if "avx2" in self.flags else "x86"
        if self.arch == "arm64":
            if "i8mm" in self.flags:
                return "arm-i8mm"
            return "arm-dotprod" if "asimddp" in self.flags else "arm-neon"
        return "other"

    def summary(self) -> str:
        return f"{self.name} ({self.isa}: {', '.join(sorted(self.flags)) or 'no int8 dot-product flags'})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arch": self.arch, "isa": self.isa, "int8_flags": sorted(self.flags),
                "source": self.source}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CpuFeatures:
        return cls(str(data["arch"]), str(data["name"]), frozenset(data.get("int8_flags") or ()), str(data["source"]))


def parse_cpuinfo(text: str, machine: str, source: str = "host") -> CpuFeatures:
    """CpuFeatures from the text of /proc/cpuinfo (the first processor's entry) and platform.machine()."""
    arch = _MACHINES.get(machine.lower(), machine.lower())
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:  # the first processor is enough: the recipe is per machine, not per core
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    # x86 says "flags", arm64 "Features"; the name is "model name" on x86, absent or "Model" on most arm64 boards
    present = set((fields.get("flags") or fields.get("features") or "").split())
    flags = frozenset(f for f in INT8_FLAGS.get(arch, ()) if f in present)
    name = fields.get("model name") or fields.get("model") or _arm_part_name(fields) or machine
    return CpuFeatures(arch, name, flags, source)


# The arm64 cores of the presets, by MIDR part number (ARM Ltd implementer 0x41), for boards whose cpuinfo names none.
_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76",
              "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE", "0xd4b": "Cortex-A78C"}  # fmt: skip


def _arm_part_name(fields: dict[str, str]) -> str | None:
    if fields.get("cpu implementer") != "0x41":
        return None
    return _ARM_PARTS.get(fields.get("cpu part", ""))


def host_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuFeatures:
    """The CPU this process runs on (no /proc/cpuinfo, as on macOS: the architecture alone, no flags)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    return parse_cpuinfo(text, platform.machine())


# The CPUs of the device presets (targets.py names one per preset): a recipe is chosen for the device, not for
# the machine that exports. Flags as the cores' /proc/cpuinfo lists them.
DEVICE_CPUS: Registry[CpuFeatures] = Registry("device CPU")
for _key, _cpu in (
    ("cortex-a72", CpuFeatures("arm64", "Cortex-A72 (Raspberry Pi 4)", frozenset({"asimd"}), "preset")),
    ("cortex-a76", CpuFeatures("arm64", "Cortex-A76 (Raspberry Pi 5)", frozenset({"asimd", "asimddp"}), "preset")),
    ("cortex-a78ae", CpuFeatures("arm64", "Cortex-A78AE (Jetson Orin)", frozenset({"asimd", "asimddp"}), "preset")),
    # a phone or tablet of unknown generation: only what every ARMv8-A core has
    ("armv8-a", CpuFeatures("arm64", "ARMv8-A (any arm64 phone)", frozenset({"asimd"}), "preset")),
):
    DEVICE_CPUS.add(_key, _cpu)


def device_cpu(key: str, target: str) -> CpuFeatures:
    cpu = DEVICE_CPUS.get(key)
    return CpuFeatures(cpu.arch, cpu.name, cpu.flags, f"target {target}")
