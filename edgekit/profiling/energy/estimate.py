"""Energy per inference estimated from the model's operation count, for devices without a meter.

``joules = flops x joules_per_flop(device)``, where a device's joules per FLOP is
``(power under load - idle power) / sustained fp32 FLOP/s of CPU inference``. The inputs are rough,
order-of-magnitude figures: board power under an all-core load and at idle as commonly published for
these boards, and a sustained throughput of roughly a quarter to a half of the cores' fp32 SIMD peak,
which is what XNNPACK-class kernels reach on transformer layers. Treat results as +-2x at best; the
report always labels them ``estimate``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from edgekit.registry import Registry


@dataclass(frozen=True)
class DeviceEnergy:
    name: str
    load_watts: float
    idle_watts: float
    sustained_gflops: float
    basis: str

    @property
    def joules_per_flop(self) -> float:
        return (self.load_watts - self.idle_watts) / (self.sustained_gflops * 1e9)


DEVICES: Registry[DeviceEnergy] = Registry("energy device")
for _device in (
    DeviceEnergy("rpi4", 6.4, 2.7, 24.0, "Pi 4B: 4x Cortex-A72 1.5 GHz, NEON peak 96 GFLOP/s, ~1/4 sustained"),
    DeviceEnergy("rpi5", 8.8, 3.0, 60.0, "Pi 5: 4x Cortex-A76 2.4 GHz, NEON peak 154 GFLOP/s, ~0.4 sustained"),
    DeviceEnergy("arm64-big-core", 3.0, 0.3, 35.0, "one phone-class big core (Cortex-A7x/X), ~2.7 W active"),
    DeviceEnergy("x86-64-core", 5.0, 0.5, 50.0, "one server/desktop AVX2+FMA core, ~4.5 W active per core"),
):
    DEVICES.add(_device.name, _device)


def detect_device(root: str | Path = "/proc/device-tree/model") -> str:
    """The table row that best matches this machine."""
    model = Path(root)
    text = model.read_text(errors="replace") if model.exists() else ""
    if "Raspberry Pi 5" in text:
        return "rpi5"
    if "Raspberry Pi 4" in text:
        return "rpi4"
    return "x86-64-core" if platform.machine() in ("x86_64", "AMD64") else "arm64-big-core"


def estimate_joules(flops: float, device: str) -> float:
    return flops * DEVICES.get(device).joules_per_flop
