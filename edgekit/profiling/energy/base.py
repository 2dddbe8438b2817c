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

import math
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import ClassVar, Protocol

from edgekit.errors import EdgekitError


class MeterUnavailable(EdgekitError):
    """The meter's hardware or permission is not there; the message says which.

    An EdgekitError because the user can act on it (run as root, pick another meter or ``--energy none``):
    ``auto`` catches it to try the next meter, a meter asked for by name lets it reach the CLI as one line.
    """


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
class BelowNoiseFloor:
    """A window whose energy above the idle baseline the meter cannot tell from its own noise.

    Kept with the raw numbers instead of being reported as 0 J: the load was real, the meter just
    cannot resolve it over this window (run more inferences, or use a finer meter).
    """

    gross_joules: float  # everything the meter saw over the window
    idle_joules: float  # the idle baseline's power x the window's length
    floor_joules: float  # two standard errors of the net power, x the window's length
    seconds: float

    @property
    def net_joules(self) -> float:
        return self.gross_joules - self.idle_joules

    def describe(self) -> str:
        return (
            f"below the noise floor: net {self.net_joules:+.4g} J (gross {self.gross_joules:.4g} J - idle "
            f"{self.idle_joules:.4g} J) within the floor of {self.floor_joules:.2g} J over {self.seconds:.3g} s"
        )


@dataclass(frozen=True)
class EnergyMeasurement:
    joules: float | None  # over the window, idle baseline subtracted; None when below the noise floor
    seconds: float
    average_watts: float  # gross average power over the window
    idle_watts: float | None  # baseline power measured before the window (None: not measured)
    samples: int
    wraps: int
    trace: tuple[tuple[float, float], ...]  # (seconds since start, watts) for plots; empty for counters
    below_noise_floor: BelowNoiseFloor | None = None  # set exactly when joules is None


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


def interval_powers(readings: list[Reading]) -> list[float]:
    """Power (W) in each sampling interval: the counter's difference over the interval, or the samples."""
    if readings and readings[0].joules is not None:
        return [(b.joules - a.joules) / (b.t - a.t) for a, b in zip(readings, readings[1:], strict=False) if b.t > a.t]
    return [r.watts for r in readings if r.watts is not None]


def variance_of_mean(powers: list[float]) -> float:
    """Variance (W^2) of the mean of ``powers``: their sample variance over their count."""
    n = len(powers)
    if n < 2:
        return 0.0
    mean = sum(powers) / n
    return sum((p - mean) ** 2 for p in powers) / (n - 1) / n


@dataclass(frozen=True)
class IdleBaseline:
    watts: float  # average power with nothing running
    variance_of_mean: float  # of ``watts``, from the spread of the per-interval powers (W^2)


def measure_baseline(meter: EnergyMeter, seconds: float, interval: float = 0.01) -> IdleBaseline:
    """Average idle power and how well it is known, to subtract from a measured window."""
    sampler = EnergySampler(meter, interval)
    sampler.start()
    time.sleep(seconds)
    readings = sampler.stop()
    span = readings[-1].t - readings[0].t
    watts = integrate(readings) / span if span > 0 else 0.0
    return IdleBaseline(watts, variance_of_mean(interval_powers(readings)))


def measure_idle(meter: EnergyMeter, seconds: float, interval: float = 0.01) -> float:
    """Average power (W) with nothing running."""
    return measure_baseline(meter, seconds, interval).watts


# No meter edgekit reads resolves a part per million of its own reading: a net energy that small is rounding.
_RESOLUTION = 1e-6


def measure_window(
    meter: EnergyMeter, run, idle_seconds: float = 1.0, interval: float = 0.01
) -> tuple[EnergyMeasurement, object]:
    """Run ``run()`` while sampling ``meter``; subtract the idle baseline measured just before.

    With a baseline, the net energy must clear the noise floor: two standard errors of (window power -
    idle power), each from the spread of its per-interval powers, times the window's length. A window
    that does not is reported as :class:`BelowNoiseFloor`, never clipped to 0 J.
    """
    idle = measure_baseline(meter, idle_seconds, interval) if idle_seconds > 0 else None
    sampler = EnergySampler(meter, interval)
    sampler.start()
    result = run()
    readings = sampler.stop()
    joules = integrate(readings)
    seconds = readings[-1].t - readings[0].t
    trace = tuple((r.t - readings[0].t, r.watts) for r in readings if r.watts is not None)
    net: float | None = joules
    below = None
    if idle is not None:
        window_variance = variance_of_mean(interval_powers(readings))
        floor = 2 * math.sqrt(window_variance + idle.variance_of_mean) * seconds + _RESOLUTION * abs(joules)
        if joules - idle.watts * seconds <= floor:
            below, net = BelowNoiseFloor(joules, idle.watts * seconds, floor, seconds), None
        else:
            net = joules - idle.watts * seconds
    measurement = EnergyMeasurement(
        joules=net, seconds=seconds, average_watts=joules / seconds if seconds > 0 else 0.0,
        idle_watts=idle.watts if idle else None, samples=len(readings), wraps=getattr(meter, "wraps", 0),
        trace=trace, below_noise_floor=below,
    )  # fmt: skip
    return measurement, result
