"""The energy-meter interface and the sampler that integrates a meter over a measured window.

Two kinds of meter exist in the wild:

- **counters** report cumulative energy (RAPL's ``energy_uj``); energy over a window is the
  difference of two readings, corrected for wrap-around at the counter's range;
- **power sensors** report instantaneous power (hwmon ``power*_input``, or current x voltage; the
  Raspberry Pi 5 PMIC; an Android battery); energy is the time integral (trapezoid rule) of samples.

Every meter takes a root path (and a command path where it shells out) so tests can point it at a
fake sysfs tree or a fake ``vcgencmd`` / ``adb`` that prints the real formats.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from typing import ClassVar, Protocol


class MeterUnavailable(Exception):
    """The meter's hardware or permission is not there; the message says which."""


def run_meter_command(argv: list[str], missing_hint: str, timeout: float = 10) -> str:
    """stdout of a meter's command; a missing binary or a failure becomes MeterUnavailable."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise MeterUnavailable(f"{argv[0]} not found ({missing_hint})") from None
    if done.returncode != 0:
        raise MeterUnavailable(f"{' '.join(argv[:2])} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


@dataclass(frozen=True)
class Reading:
    """One sample: a cumulative energy counter (joules) or an instantaneous power (watts)."""

    t: float  # time.perf_counter()
    joules: float | None = None
    watts: float | None = None


class EnergyMeter(Protocol):
    name: ClassVar[str]
    # "counter" (cumulative joules, may wrap) or "power" (instantaneous watts)
    kind: ClassVar[str]

    def check(self) -> None:
        """Raise MeterUnavailable (with the reason) when this meter cannot read here."""

    def read(self) -> Reading:
        """One sample; counters return monotonic joules (the meter unwraps its own counters)."""
        ...


@dataclass(frozen=True)
class EnergyMeasurement:
    joules: float  # over the window, idle baseline already subtracted
    seconds: float
    average_watts: float  # gross average power over the window
    idle_watts: float | None  # baseline power measured before the window (None: not measured)
    samples: int
    wraps: int
    trace: tuple[tuple[float, float], ...]  # (seconds since start, watts) for plots; empty for counters


class EnergySampler:
    """Samples a meter on a background thread between ``start()`` and ``stop()``."""

    def __init__(self, meter: EnergyMeter, interval: float = 0.01):
        self.meter = meter
        self.interval = interval
        self._readings: list[Reading] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._readings = [self.meter.read()]
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="edgekit-energy", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._readings.append(self.meter.read())

    def stop(self) -> list[Reading]:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._readings.append(self.meter.read())
        return list(self._readings)


def integrate(readings: list[Reading]) -> float:
    """Energy (J) over the readings: counter difference, or the trapezoid integral of power."""
    if len(readings) < 2:
        return 0.0
    if readings[0].joules is not None:
        return readings[-1].joules - readings[0].joules
    return sum(0.5 * (a.watts + b.watts) * (b.t - a.t) for a, b in zip(readings, readings[1:], strict=False))


class Unwrapper:
    """Turns a counter that restarts from zero at ``wrap`` into a monotonic one; counts the wraps."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.offset: dict[str, float] = {}
        self.wraps = 0

    def __call__(self, key: str, raw: float, wrap: float) -> float:
        if key in self.last and raw < self.last[key]:
            self.offset[key] = self.offset.get(key, 0.0) + wrap
            self.wraps += 1
        self.last[key] = raw
        return raw + self.offset.get(key, 0.0)


def measure_idle(meter: EnergyMeter, seconds: float, interval: float = 0.01) -> float:
    """Average power (W) with nothing running, to subtract from a measured window."""
    sampler = EnergySampler(meter, interval)
    sampler.start()
    time.sleep(seconds)
    readings = sampler.stop()
    joules = integrate(readings)
    span = readings[-1].t - readings[0].t
    return joules / span if span > 0 else 0.0


def measure_window(
    meter: EnergyMeter, run, idle_seconds: float = 1.0, interval: float = 0.01
) -> tuple[EnergyMeasurement, object]:
    """Run ``run()`` while sampling ``meter``; subtract the idle baseline measured just before."""
    idle = measure_idle(meter, idle_seconds, interval) if idle_seconds > 0 else None
    sampler = EnergySampler(meter, interval)
    sampler.start()
    result = run()
    readings = sampler.stop()
    joules = integrate(readings)
    seconds = readings[-1].t - readings[0].t
    trace = tuple((r.t - readings[0].t, r.watts) for r in readings if r.watts is not None)
    net = joules - (idle or 0.0) * seconds
    measurement = EnergyMeasurement(
        joules=max(net, 0.0), seconds=seconds, average_watts=joules / seconds if seconds > 0 else 0.0,
        idle_watts=idle, samples=len(readings), wraps=getattr(meter, "wraps", 0), trace=trace,
    )  # fmt: skip
    return measurement, result
