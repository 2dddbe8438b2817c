"""A meter kept running for as long as a process serves: one cumulative energy total (a worker's ``Energy`` RPC).

Whoever wants the energy over a window reads the total at its start and at its end; the difference is the
window's energy, with no per-caller state on the metered side (any number of coordinators may overlap).
Power sensors (hwmon, the Pi 5 PMIC) are sampled on a background thread and integrated (trapezoid rule);
counters (RAPL) are read on the same thread, seldom, only so that the meter sees every wrap-around of its
counter even when nobody asks for a long time. Every ``read()`` also takes a fresh sample, so a window ends
when it is read, not at the last tick.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from edgekit.errors import ConfigError
from edgekit.profiling.energy.base import EnergyMeter, integrate

log = logging.getLogger(__name__)

POWER_INTERVAL_S = 0.1
COUNTER_INTERVAL_S = 10.0  # RAPL's package counter wraps after hours at edge-device power; this is far inside


@dataclass(frozen=True)
class EnergyTotal:
    """A meter's total so far (what a worker's ``Energy`` returns), or why there is none."""

    meter: str = ""  # empty: no total (``reason`` says why)
    joules: float = 0.0  # since metering started
    seconds: float = 0.0  # since metering started, on the metered process's clock
    since_unix_ns: int = 0  # when metering started: tells one process's totals from a restarted one's
    reason: str = ""


class EnergyTotalizer:
    def __init__(self, meter: EnergyMeter, interval: float | None = None):
        self.meter = meter
        self.interval = interval or (POWER_INTERVAL_S if meter.kind == "power" else COUNTER_INTERVAL_S)
        self._lock = threading.Lock()
        self._first = self._last = meter.read()
        self.since_unix_ns = time.time_ns()
        self._joules = 0.0
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgekit-energy-total", daemon=True)
        self._thread.start()

    def _advance(self) -> None:
        reading = self.meter.read()
        with self._lock:
            if reading.t > self._last.t:
                self._joules += integrate([self._last, reading])
                self._last = reading

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._advance()
                self._failing = False
            except (OSError, ValueError) as exc:  # a sensor file gone or garbled: said once, the total is kept
                if not self._failing:
                    log.warning("energy meter %s: reading failed (%s); the total stops growing", self.meter.name, exc)
                self._failing = True

    def read(self) -> EnergyTotal:
        """The total now (raises OSError / ValueError when the meter cannot be read)."""
        self._advance()
        with self._lock:
            return EnergyTotal(self.meter.name, self._joules, self._last.t - self._first.t, self.since_unix_ns)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1.0)


def start_totalizer(choice: str) -> tuple[EnergyTotalizer | None, str]:
    """A running total for ``choice`` (auto, a meter name or none), or None and why there is none.

    A meter named by ``choice`` that cannot read here raises MeterUnavailable, as for a profile."""
    from edgekit.profiling.energy import select_meter

    if choice == "estimate":
        raise ConfigError("--energy estimate is a model of power, not a meter: give auto, a meter name or none")
    meter, skipped = select_meter(choice)
    if meter is None:
        why = "started with --energy none" if choice == "none" else "no meter here (" + "; ".join(skipped) + ")"
        return None, why
    return EnergyTotalizer(meter), ""
