"""Android battery through adb: ``current_now`` (microamps) x ``voltage_now`` (microvolts).

Only meaningful while the phone runs from its battery (unplugged, adb over Wi-Fi): on USB power the
charger supplies the load. The sign of ``current_now`` differs between vendors, so its magnitude is used.
"""

from __future__ import annotations

import time
from typing import ClassVar

from edgekit.profiling.energy.base import MeterUnavailable, Reading, run_meter_command

SUPPLY = "/sys/class/power_supply/battery"


def parse_battery(text: str) -> float:
    """Watts from two lines: current_now (uA) and voltage_now (uV)."""
    values = [int(v) for v in text.split()]
    if len(values) != 2:
        raise MeterUnavailable(f"expected current_now and voltage_now, got {text.strip()!r}")
    current_ua, voltage_uv = values
    return abs(current_ua) * voltage_uv * 1e-12


class AndroidBatteryMeter:
    name: ClassVar[str] = "android-battery"
    kind: ClassVar[str] = "power"

    def __init__(self, command: str = "adb", serial: str | None = None):
        self.command = command
        self.serial = serial

    def _run(self) -> str:
        argv = [self.command, *(["-s", self.serial] if self.serial else []), "shell",
                f"cat {SUPPLY}/current_now {SUPPLY}/voltage_now"]  # fmt: skip
        return run_meter_command(argv, "install Android platform-tools")

    def check(self) -> None:
        parse_battery(self._run())

    def read(self) -> Reading:
        return Reading(time.perf_counter(), watts=parse_battery(self._run()))
