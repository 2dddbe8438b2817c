"""Linux RAPL through powercap: ``/sys/class/powercap/intel-rapl:N/energy_uj`` (Intel and recent AMD).

Top-level zones (one per CPU package) are summed; their sub-zones (core, uncore, dram) are parts of
the package and would double count. Each zone's counter wraps at ``max_energy_range_uj``. Since
2020 kernels let only root read ``energy_uj``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import ClassVar

from edgekit.profiling.energy.base import MeterUnavailable, Reading, Unwrapper

_PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")


class RaplMeter:
    name: ClassVar[str] = "rapl"
    kind: ClassVar[str] = "counter"

    def __init__(self, root: str | Path = "/sys/class/powercap"):
        self.root = Path(root)
        self._unwrap = Unwrapper()

    @property
    def wraps(self) -> int:
        return self._unwrap.wraps

    def _zones(self) -> list[Path]:
        if not self.root.is_dir():
            raise MeterUnavailable(f"no powercap interface at {self.root} (not Linux, or no RAPL driver)")
        zones = sorted(p for p in self.root.iterdir() if _PACKAGE_ZONE.match(p.name) and (p / "energy_uj").exists())
        if not zones:
            raise MeterUnavailable(f"no RAPL package zones under {self.root}")
        return zones

    def check(self) -> None:
        for zone in self._zones():
            try:
                int((zone / "energy_uj").read_text())
            except PermissionError:
                raise MeterUnavailable(
                    f"{zone / 'energy_uj'} is readable by root only (kernel default since 2020); run as root"
                ) from None

    def read(self) -> Reading:
        total = 0.0
        for zone in self._zones():
            raw = int((zone / "energy_uj").read_text())
            wrap = int((zone / "max_energy_range_uj").read_text())
            total += self._unwrap(zone.name, raw, wrap)
        return Reading(time.perf_counter(), joules=total * 1e-6)
