"""Linux RAPL through powercap: ``/sys/class/powercap/intel-rapl:N/energy_uj`` (Intel and recent AMD).

Each top-level zone names what it covers in its ``name`` file. ``package-N`` zones (one per CPU
package) are summed; their sub-zones (core, uncore, dram) are parts of the package and would double
count. Many Intel machines add ``psys``, the whole platform, which already contains the packages: it
is never added to them, and is read alone only where no package zone exists. Other top-level zones
(a ``dram`` zone on some servers) are not CPU energy and are left out. Each zone's counter wraps at
``max_energy_range_uj``. Since 2020 kernels let only root read ``energy_uj``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import ClassVar

from edgekit.profiling.energy.base import MeterUnavailable, Reading, Unwrapper

_TOP_LEVEL_ZONE = re.compile(r"^intel-rapl:\d+$")
_PACKAGE_NAME = re.compile(r"^package-\d+$")
_PLATFORM_NAME = "psys"


class RaplMeter:
    name: ClassVar[str] = "rapl"
    kind: ClassVar[str] = "counter"

    def __init__(self, root: str | Path = "/sys/class/powercap"):
        self.root = Path(root)
        self._unwrap = Unwrapper()
        self._found: list[Path] | None = None  # zones do not come and go: read their names once

    @property
    def wraps(self) -> int:
        return self._unwrap.wraps

    def _zones(self) -> list[Path]:
        if self._found is None:
            self._found = self._discover()
        return self._found

    def _discover(self) -> list[Path]:
        if not self.root.is_dir():
            raise MeterUnavailable(f"no powercap interface at {self.root} (not Linux, or no RAPL driver)")
        named = {
            p: _zone_name(p)
            for p in sorted(self.root.iterdir())
            if _TOP_LEVEL_ZONE.match(p.name) and (p / "energy_uj").exists()
        }
        packages = [p for p, name in named.items() if _PACKAGE_NAME.match(name)]
        if packages:
            return packages
        platform = [p for p, name in named.items() if name == _PLATFORM_NAME]
        if platform:
            return platform
        found = ", ".join(f"{p.name} ({name or 'no name'})" for p, name in named.items()) or "none"
        raise MeterUnavailable(f"no RAPL package or psys zone under {self.root} (top-level zones: {found})")

    def zones(self) -> list[str]:
        """The zones this meter sums, as ``intel-rapl:N (name)``."""
        return [f"{p.name} ({_zone_name(p)})" for p in self._zones()]

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


def _zone_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip()
    except OSError:
        return ""
