"""Raspberry Pi 5 PMIC through ``vcgencmd pmic_read_adc``: current and voltage of each supply rail.

Lines look like ``VDD_CORE_A current(7)=2.10045400A`` and ``VDD_CORE_V volt(15)=0.88000000V``; power
is the sum over rails that report both. The PMIC sees the board's internal rails, not the 5 V input,
so converter losses and USB devices are outside the number.
"""

from __future__ import annotations

import re
import time
from typing import ClassVar

from edgekit.profiling.energy.base import MeterUnavailable, Reading, run_meter_command

_LINE = re.compile(r"^\s*(?P<rail>\S+)_(?P<kind>[AV])\s+(?:current|volt)\(\d+\)=(?P<value>[-\d.]+)[AV]\s*$")


def parse_pmic(text: str) -> dict[str, float]:
    """Rail -> watts from ``vcgencmd pmic_read_adc`` output."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            (amps if m["kind"] == "A" else volts)[m["rail"]] = float(m["value"])
    return {rail: amps[rail] * volts[rail] for rail in amps if rail in volts}


class Pi5PmicMeter:
    name: ClassVar[str] = "pi5-pmic"
    kind: ClassVar[str] = "power"

    def __init__(self, command: str = "vcgencmd"):
        self.command = command

    def _run(self) -> str:
        return run_meter_command([self.command, "pmic_read_adc"], "not a Raspberry Pi OS system", timeout=5)

    def check(self) -> None:
        if not parse_pmic(self._run()):
            raise MeterUnavailable(f"{self.command} pmic_read_adc printed no rails (a Raspberry Pi 5 is needed)")

    def read(self) -> Reading:
        return Reading(time.perf_counter(), watts=sum(parse_pmic(self._run()).values()))
