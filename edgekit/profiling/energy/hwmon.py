"""hwmon power sensors: INA219 / INA226 boards, INA3221 (Jetson rails) and anything else exposing power.

Units (Linux hwmon ABI): ``power*_input`` microwatts, ``curr*_input`` milliamps, ``in*_input``
millivolts. A sensor with ``powerN_input`` is read directly; otherwise power is ``currN * inN`` per
channel. Channels are summed, except that a channel labelled as the board input (``VDD_IN``, as on
Jetson modules) is the total already and is used alone.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import ClassVar

from edgekit.profiling.energy.base import MeterUnavailable, Reading

TOTAL_LABELS = ("VDD_IN",)


class HwmonMeter:
    name: ClassVar[str] = "hwmon"
    kind: ClassVar[str] = "power"

    def __init__(self, root: str | Path = "/sys/class/hwmon", chips: tuple[str, ...] | None = None):
        self.root = Path(root)
        self.chips = chips  # hwmon `name` values to use (default: any chip with power or current channels)
        self._channels: list[tuple[str, list[Path]]] | None = None

    def _discover(self) -> list[tuple[str, list[Path]]]:
        """[(label, [files]) ...]: one power file, or a current file and its voltage file."""
        if self._channels is not None:
            return self._channels
        if not self.root.is_dir():
            raise MeterUnavailable(f"no hwmon interface at {self.root}")
        channels: list[tuple[str, list[Path]]] = []
        for chip in sorted(self.root.iterdir()):
            name = (chip / "name").read_text().strip() if (chip / "name").exists() else chip.name
            if self.chips and name not in self.chips:
                continue
            powers = sorted(chip.glob("power*_input"))
            if powers:
                channels += [(_label(p, name), [p]) for p in powers]
                continue
            for curr in sorted(chip.glob("curr*_input")):
                n = re.search(r"curr(\d+)_input", curr.name).group(1)
                volt = chip / f"in{n}_input"
                if volt.exists():
                    channels.append((_label(curr, name), [curr, volt]))
        if not channels:
            raise MeterUnavailable(f"no hwmon power or current+voltage sensors under {self.root}")
        totals = [c for c in channels if c[0].split(":")[-1] in TOTAL_LABELS]
        self._channels = totals or channels
        return self._channels

    def check(self) -> None:
        for _, files in self._discover():
            for f in files:
                try:
                    f.read_text()
                except PermissionError:
                    raise MeterUnavailable(f"{f} is not readable by this user") from None

    def read(self) -> Reading:
        watts = 0.0
        for _, files in self._discover():
            if len(files) == 1:
                watts += int(files[0].read_text()) * 1e-6
            else:
                watts += int(files[0].read_text()) * int(files[1].read_text()) * 1e-6  # mA * mV
        return Reading(time.perf_counter(), watts=watts)

    def channels(self) -> list[str]:
        return [label for label, _ in self._discover()]


def _label(path: Path, chip: str) -> str:
    label = path.with_name(path.name.replace("_input", "_label"))
    if not label.exists():  # INA3221: the label sits on the voltage channel
        n = re.search(r"(\d+)_input", path.name).group(1)
        label = path.with_name(f"in{n}_label")
    return f"{chip}:{label.read_text().strip()}" if label.exists() else f"{chip}:{path.name}"
