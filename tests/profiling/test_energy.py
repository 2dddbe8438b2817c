"""Energy meters against fake sysfs trees and fake commands that print the real formats."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from edgekit.profiling.energy import METERS, select_meter
from edgekit.profiling.energy.android import AndroidBatteryMeter, parse_battery
from edgekit.profiling.energy.base import MeterUnavailable, Reading, integrate, measure_window
from edgekit.profiling.energy.estimate import DEVICES, detect_device, estimate_joules
from edgekit.profiling.energy.hwmon import HwmonMeter
from edgekit.profiling.energy.pi5_pmic import Pi5PmicMeter, parse_pmic
from edgekit.profiling.energy.rapl import RaplMeter

# `vcgencmd pmic_read_adc` on a Raspberry Pi 5 (abridged: four rails, plus lines without a partner)
PMIC_OUTPUT = """\
     3V7_WL_SW_A current(0)=0.00390372A
       3V3_SYS_A current(1)=0.05660400A
      VDD_CORE_A current(7)=2.10045400A
        EXT5V_A current(11)=0.00000000A
     3V7_WL_SW_V volt(8)=3.74426000V
       3V3_SYS_V volt(9)=3.31776000V
      VDD_CORE_V volt(15)=0.88000000V
        EXT5V_V volt(24)=5.15808000V
         BATT_V volt(25)=0.00000000V
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


# -- RAPL -----------------------------------------------------------------------------------------


@pytest.fixture
def rapl_root(tmp_path):
    root = tmp_path / "powercap"
    for pkg in (0, 1):
        write(root / f"intel-rapl:{pkg}/energy_uj", "1000000")
        write(root / f"intel-rapl:{pkg}/max_energy_range_uj", "262143328850")
        write(root / f"intel-rapl:{pkg}/name", f"package-{pkg}")
        write(root / f"intel-rapl:{pkg}/intel-rapl:{pkg}:0/energy_uj", "999999999")  # core sub-zone: not summed
    return root


def test_rapl_sums_packages_not_subzones(rapl_root):
    meter = RaplMeter(rapl_root)
    meter.check()
    assert meter.read().joules == pytest.approx(2.0)  # 2 x 1,000,000 uJ


def test_rapl_never_adds_the_platform_zone_to_the_packages(rapl_root):
    # Many Intel laptops expose psys (the whole platform, package included) as a second top-level zone.
    write(rapl_root / "intel-rapl:1/name", "psys\n")
    write(rapl_root / "intel-rapl:1/energy_uj", "5000000")
    write(rapl_root / "intel-rapl:2/energy_uj", "3000000")  # a top-level zone of unknown kind
    write(rapl_root / "intel-rapl:2/max_energy_range_uj", "262143328850")
    write(rapl_root / "intel-rapl:2/name", "dram\n")
    meter = RaplMeter(rapl_root)
    meter.check()
    assert meter.read().joules == pytest.approx(1.0)  # package-0 alone
    assert meter.zones() == ["intel-rapl:0 (package-0)"]


def test_rapl_reads_the_platform_zone_only_when_there_is_no_package_zone(rapl_root):
    (rapl_root / "intel-rapl:0").rename(rapl_root.parent / "elsewhere")
    write(rapl_root / "intel-rapl:1/name", "psys\n")
    write(rapl_root / "intel-rapl:1/energy_uj", "5000000")
    meter = RaplMeter(rapl_root)
    assert meter.read().joules == pytest.approx(5.0)
    assert meter.zones() == ["intel-rapl:1 (psys)"]


def test_rapl_unwraps_its_counter(rapl_root):
    (rapl_root / "intel-rapl:1").rename(rapl_root.parent / "elsewhere")  # one package keeps the numbers simple
    write(rapl_root / "intel-rapl:0/max_energy_range_uj", "1000000")
    meter = RaplMeter(rapl_root)
    values = ["900000", "990000", "40000", "300000"]  # wraps once between the 2nd and 3rd reading
    readings = []
    for v in values:
        write(rapl_root / "intel-rapl:0/energy_uj", v)
        readings.append(meter.read())
    assert meter.wraps == 1
    # 0.09 J to the wrap, 0.05 J after it, then 0.26 J
    assert integrate(readings) == pytest.approx(0.09 + 0.05 + 0.26)


def test_rapl_without_root_says_so(rapl_root, monkeypatch):
    original = Path.read_text

    def denied(self, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(MeterUnavailable, match="root"):
        RaplMeter(rapl_root).check()


def test_rapl_absent(tmp_path):
    with pytest.raises(MeterUnavailable, match="no powercap"):
        RaplMeter(tmp_path / "nothing").check()


# -- hwmon ----------------------------------------------------------------------------------------


def test_hwmon_ina219_power_channel(tmp_path):
    write(tmp_path / "hwmon0/name", "ina219\n")
    write(tmp_path / "hwmon0/power1_input", "2500000\n")  # microwatts
    write(tmp_path / "hwmon1/name", "k10temp\n")  # a temperature chip: ignored
    write(tmp_path / "hwmon1/temp1_input", "45000\n")
    meter = HwmonMeter(tmp_path)
    meter.check()
    assert meter.read().watts == pytest.approx(2.5)


def test_hwmon_ina3221_jetson_uses_the_input_rail_alone(tmp_path):
    chip = tmp_path / "hwmon2"
    write(chip / "name", "ina3221\n")
    for n, (label, ma, mv) in enumerate(
        [("VDD_IN", 1200, 5000), ("VDD_CPU_GPU_CV", 400, 5000), ("VDD_SOC", 300, 5000)], 1
    ):
        write(chip / f"in{n}_label", label)
        write(chip / f"curr{n}_input", str(ma))
        write(chip / f"in{n}_input", str(mv))
    meter = HwmonMeter(tmp_path)
    assert meter.channels() == ["ina3221:VDD_IN"]
    assert meter.read().watts == pytest.approx(6.0)  # 1200 mA x 5000 mV


def test_hwmon_sums_channels_without_a_total(tmp_path):
    chip = tmp_path / "hwmon0"
    write(chip / "name", "ina3221\n")
    for n, (ma, mv) in enumerate([(100, 5000), (200, 3300)], 1):
        write(chip / f"curr{n}_input", str(ma))
        write(chip / f"in{n}_input", str(mv))
    assert HwmonMeter(tmp_path).read().watts == pytest.approx(0.5 + 0.66)


def test_hwmon_absent(tmp_path):
    write(tmp_path / "hwmon0/name", "k10temp\n")
    with pytest.raises(MeterUnavailable, match="no hwmon power"):
        HwmonMeter(tmp_path).check()


# -- Raspberry Pi 5 PMIC and Android ----------------------------------------------------------------


def test_pmic_parsing_pairs_current_and_voltage():
    rails = parse_pmic(PMIC_OUTPUT)
    assert set(rails) == {"3V7_WL_SW", "3V3_SYS", "VDD_CORE", "EXT5V"}
    assert rails["VDD_CORE"] == pytest.approx(2.100454 * 0.88)


def test_pmic_meter_runs_the_command(tmp_path):
    fake = script(tmp_path / "vcgencmd", f"[ \"$1\" = pmic_read_adc ] || exit 1\ncat <<'EOF'\n{PMIC_OUTPUT}EOF\n")
    meter = Pi5PmicMeter(str(fake))
    meter.check()
    assert meter.read().watts == pytest.approx(sum(parse_pmic(PMIC_OUTPUT).values()))


def test_pmic_absent_or_failing(tmp_path):
    with pytest.raises(MeterUnavailable, match="not found"):
        Pi5PmicMeter(str(tmp_path / "missing")).check()
    failing = script(tmp_path / "vcgencmd", "echo 'Command not registered' >&2\nexit 1\n")
    with pytest.raises(MeterUnavailable, match="not registered"):
        Pi5PmicMeter(str(failing)).check()


def test_android_battery(tmp_path):
    assert parse_battery("-412000\n3870000\n") == pytest.approx(0.412 * 3.87)
    fake = script(tmp_path / "adb", 'case "$*" in *current_now*) printf -- "-250000\\n4000000\\n";; *) exit 1;; esac\n')
    meter = AndroidBatteryMeter(str(fake))
    meter.check()
    assert meter.read().watts == pytest.approx(1.0)
    offline = script(tmp_path / "adb2", "echo 'error: no devices/emulators found' >&2\nexit 1\n")
    with pytest.raises(MeterUnavailable, match="no devices"):
        AndroidBatteryMeter(str(offline)).check()


# -- integration over a window ----------------------------------------------------------------------


class SteppedPower:
    """A fake power sensor: idle watts until `busy` is set, then busy watts."""

    name = "fake"
    kind = "power"

    def __init__(self, idle: float, busy: float):
        self.idle, self.busy, self.loaded = idle, busy, False

    def check(self) -> None:
        pass

    def read(self) -> Reading:
        return Reading(time.perf_counter(), watts=self.busy if self.loaded else self.idle)


def test_window_subtracts_the_idle_baseline():
    meter = SteppedPower(idle=2.0, busy=5.0)

    def work():
        meter.loaded = True
        time.sleep(0.5)
        return "done"

    measured, result = measure_window(meter, work, idle_seconds=0.3, interval=0.005)
    assert result == "done"
    assert measured.idle_watts == pytest.approx(2.0)
    assert measured.average_watts == pytest.approx(5.0, rel=0.05)
    assert measured.joules == pytest.approx(3.0 * measured.seconds, rel=0.05)
    assert measured.trace and measured.samples > 20


@pytest.mark.parametrize("idle, busy", [(5.0, 4.0), (4.0, 4.0)])
def test_a_window_below_the_noise_floor_is_not_a_measurement(idle, busy):
    # Drawing less than (or the same as) the idle baseline: the net energy is noise, not 0 J.
    meter = SteppedPower(idle=idle, busy=busy)

    def work():
        meter.loaded = True
        time.sleep(0.2)

    measured, _ = measure_window(meter, work, idle_seconds=0.2, interval=0.005)
    assert measured.joules is None
    noise = measured.below_noise_floor
    assert noise is not None
    assert noise.gross_joules == pytest.approx(busy * measured.seconds, rel=0.05)
    assert noise.idle_joules == pytest.approx(idle * measured.seconds, rel=0.01)
    assert noise.net_joules == pytest.approx(noise.gross_joules - noise.idle_joules)
    assert noise.net_joules <= noise.floor_joules
    assert "below the noise floor" in noise.describe()


def test_a_window_above_the_noise_floor_keeps_its_numbers():
    meter = SteppedPower(idle=2.0, busy=5.0)

    def work():
        meter.loaded = True
        time.sleep(0.2)

    measured, _ = measure_window(meter, work, idle_seconds=0.2, interval=0.005)
    assert measured.below_noise_floor is None
    # the sampler thread reads every 5 ms; on a loaded machine it can miss the step by a few readings
    assert measured.joules == pytest.approx(3.0 * measured.seconds, rel=0.25)


class NoisyPower(SteppedPower):
    """Alternates +-1 W around its level: a sensor whose single readings are far noisier than its mean."""

    def __init__(self, idle: float, busy: float):
        super().__init__(idle, busy)
        self.sign = 1.0

    def read(self) -> Reading:
        self.sign = -self.sign
        reading = super().read()
        return Reading(reading.t, watts=reading.watts + self.sign)


@pytest.mark.parametrize("extra_watts, resolved", [(0.002, False), (3.0, True)])
def test_the_noise_floor_follows_the_meter_noise(extra_watts, resolved):
    # +-1 W of noise per reading: 2 mW more under load is not measurable over 0.2 s, 3 W is.
    meter = NoisyPower(idle=3.0, busy=3.0 + extra_watts)

    def work():
        meter.loaded = True
        time.sleep(0.2)

    measured, _ = measure_window(meter, work, idle_seconds=0.2, interval=0.005)
    assert (measured.below_noise_floor is None) == resolved
    if resolved:
        assert measured.joules == pytest.approx(extra_watts * measured.seconds, rel=0.3)
    else:
        # two standard errors of ~40 readings a window: about 0.5 W, far above the 2 mW and below the 3 W
        assert 0.05 * measured.seconds < measured.below_noise_floor.floor_joules < 2.0 * measured.seconds


def test_trapezoid_integral():
    readings = [Reading(0.0, watts=1.0), Reading(1.0, watts=3.0), Reading(3.0, watts=3.0)]
    assert integrate(readings) == pytest.approx(2.0 + 6.0)


# -- estimate and selection ---------------------------------------------------------------------------


def test_estimate_scales_with_operations():
    one = estimate_joules(1e9, "rpi4")
    assert estimate_joules(3e9, "rpi4") == pytest.approx(3 * one)
    assert estimate_joules(1e9, "rpi5") < one  # a faster core spends less per FLOP in this table
    for row in DEVICES.names():
        assert 1e-12 < DEVICES.get(row).joules_per_flop < 1e-9  # 1 pJ .. 1 nJ per FLOP


def test_device_detection(tmp_path):
    write(tmp_path / "model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    assert detect_device(tmp_path / "model") == "rpi5"
    write(tmp_path / "model", "Raspberry Pi 4 Model B Rev 1.4\x00")
    assert detect_device(tmp_path / "model") == "rpi4"


def test_auto_selection_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_POWERCAP_ROOT", str(tmp_path / "none"))
    monkeypatch.setenv("EDGEKIT_VCGENCMD", str(tmp_path / "none"))
    write(tmp_path / "hwmon/hwmon0/name", "ina226\n")
    write(tmp_path / "hwmon/hwmon0/power1_input", "1000000\n")
    monkeypatch.setenv("EDGEKIT_HWMON_ROOT", str(tmp_path / "hwmon"))
    meter, skipped = select_meter("auto")
    assert meter is not None and meter.name == "hwmon"
    assert len(skipped) == 1 and skipped[0].startswith("rapl:")
    monkeypatch.setenv("EDGEKIT_HWMON_ROOT", str(tmp_path / "none"))
    meter, skipped = select_meter("auto")
    assert meter is None and len(skipped) == 3
    with pytest.raises(MeterUnavailable):
        select_meter("hwmon")
    assert set(METERS.names()) == {"android-battery", "hwmon", "pi5-pmic", "rapl"}
