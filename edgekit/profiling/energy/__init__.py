"""Energy meters behind one registry, and the choice of meter for ``--energy auto|NAME|none``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from edgekit.profiling.energy.android import AndroidBatteryMeter
from edgekit.profiling.energy.base import EnergyMeter, MeterUnavailable, measure_window
from edgekit.profiling.energy.hwmon import HwmonMeter
from edgekit.profiling.energy.pi5_pmic import Pi5PmicMeter
from edgekit.profiling.energy.rapl import RaplMeter
from edgekit.registry import Registry

log = logging.getLogger(__name__)

# Each factory reads its location from the environment when set, so a test (or an unusual system)
# can point the meter at another sysfs tree or another vcgencmd / adb binary.
METERS: Registry[Callable[[], EnergyMeter]] = Registry("energy meter")
METERS.add("rapl", lambda: RaplMeter(os.environ.get("EDGEKIT_POWERCAP_ROOT", "/sys/class/powercap")))
METERS.add("hwmon", lambda: HwmonMeter(os.environ.get("EDGEKIT_HWMON_ROOT", "/sys/class/hwmon")))
METERS.add("pi5-pmic", lambda: Pi5PmicMeter(os.environ.get("EDGEKIT_VCGENCMD", "vcgencmd")))
METERS.add(
    "android-battery",
    lambda: AndroidBatteryMeter(os.environ.get("EDGEKIT_ADB", "adb"), os.environ.get("ANDROID_SERIAL")),
)

# `auto` tries these in order; android-battery measures another device, so it is never picked silently.
AUTO_ORDER = ("rapl", "hwmon", "pi5-pmic")

__all__ = ["METERS", "MeterUnavailable", "measure_window", "select_meter"]


def select_meter(choice: str) -> tuple[EnergyMeter | None, list[str]]:
    """The meter for ``choice`` ('auto', a meter name, 'estimate' or 'none') and why others were skipped.

    A meter named by ``choice`` that cannot read here raises MeterUnavailable (an EdgekitError).
    """
    if choice in ("none", "estimate"):
        return None, []
    names = AUTO_ORDER if choice == "auto" else (choice,)
    skipped = []
    for name in names:
        meter = METERS.get(name)()
        try:
            meter.check()
        except MeterUnavailable as exc:
            if choice != "auto":
                raise MeterUnavailable(f"energy meter {name!r} cannot be read here: {exc}") from None
            skipped.append(f"{name}: {exc}")
            log.info("energy meter %s unavailable: %s", name, exc)
            continue
        return meter, skipped
    return None, skipped
