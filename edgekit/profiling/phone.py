"""``edgekit profile BUNDLE --on adb[:SERIAL]``: a bundle profiled on an Android phone by the phone's own tool.

The bundle is verified here, its graph files pushed under ``/data/local/tmp/edgekit/<digest>``, and the
format's benchmark tool (``phone_tools.PHONE_TOOLS``: found on the phone or given with ``--tool``) runs each
graph with the asked run and warm-up counts. Its output becomes the same ``ProfileReport`` a local profile
gives, naming the phone, and the battery meter (``current_now`` x ``voltage_now`` over adb) adds energy per
inference while the tool runs, idle baseline subtracted. The tools feed their own inputs (random or ones).
"""

from __future__ import annotations

import logging
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgekit.bundle import MANIFEST_NAME, read_bundle, sha256_file
from edgekit.errors import UnsupportedOptionError
from edgekit.profiling.adb import REMOTE_ROOT, AdbDevice, AdbError
from edgekit.profiling.energy import measure_window
from edgekit.profiling.energy.android import AndroidBatteryMeter
from edgekit.profiling.energy.base import MeterUnavailable
from edgekit.profiling.phone_tools import PHONE_TOOLS, ToolCall
from edgekit.profiling.profiler import GraphProfile, ProfileReport, measured_energy

log = logging.getLogger(__name__)

SEARCH = ("/data/local/tmp", "/data/local/tmp/bin", "/data/local/tmp/edgekit/bin")
ENERGY_CHOICES = ("auto", "android-battery", "none")


@dataclass(frozen=True)
class PhoneSettings:
    runs: int = 50
    warmup: int = 5
    threads: int | None = None
    energy: str = "auto"
    idle_seconds: float = 1.0
    tool: str | None = None  # the tool's path on the phone; found by name when None


def parse_adb_target(text: str) -> str | None | bool:
    """``adb`` -> None (the only phone), ``adb:SERIAL`` -> SERIAL; anything else -> False (not a phone)."""
    if text == "adb":
        return None
    if text.startswith("adb:") and text[4:]:
        return text[4:]
    return False


def profile_on_phone(
    bundle_path: str | Path, device: AdbDevice, settings: PhoneSettings | None = None
) -> ProfileReport:
    settings = settings or PhoneSettings()
    if settings.runs < 1 or settings.warmup < 0:
        raise UnsupportedOptionError("--runs/--warmup", (settings.runs, settings.warmup), ["runs >= 1, warmup >= 0"])
    if settings.energy not in ENERGY_CHOICES:
        raise UnsupportedOptionError("--energy", settings.energy, list(ENERGY_CHOICES))
    start = time.perf_counter()
    bundle = read_bundle(bundle_path)  # a damaged bundle is refused before anything is pushed
    verify_ms = (time.perf_counter() - start) * 1e3
    tool = PHONE_TOOLS.get(bundle.format)
    path = device.find_tool(tool.names, settings.tool, SEARCH)
    host = _phone_info(device)
    meter, notes = _battery(device, settings.energy)
    folder = f"{REMOTE_ROOT}/{sha256_file(bundle.path / MANIFEST_NAME)[:16]}"
    device.shell(f"mkdir -p {shlex.quote(folder)}")
    graphs = []
    try:
        for graph in bundle.graphs:
            remote = f"{folder}/{Path(graph.file).name}"
            device.push(bundle.file(graph.file), remote)
            call = tool.call(path, remote, settings.runs, settings.warmup, settings.threads, graph.entry)

            def run(call: ToolCall = call) -> tuple[list[str], str | None]:
                return [device.shell(c, timeout=600).stdout for c in call.commands], _pull(device, call.result_file)

            if meter is not None:
                measured, (outputs, result) = _measure(meter, run, settings.idle_seconds)
            else:
                (outputs, result), measured = run(), None
            parsed = tool.parse(outputs, result, settings.runs)
            energy = measured_energy(meter.name, measured, parsed.latency.runs) if measured else None
            graphs.append(GraphProfile(graph.name, parsed.load_ms, parsed.first_inference_ms, parsed.latency,
                                       parsed.peak_rss_bytes, parsed.model_memory_bytes, energy))  # fmt: skip
    finally:
        device.shell(f"rm -rf {shlex.quote(folder)}", check=False)
    return ProfileReport(
        bundle=str(bundle_path), model=bundle.model, format=bundle.format, runtime=tool.runtime,
        file_bytes=bundle.manifest.total_bytes, verify_ms=verify_ms, import_ms=0.0, threads=settings.threads,
        host=host, graphs=tuple(graphs), energy_notes=tuple(notes), device=f"{device.label} ({host['model']})",
        timed_by=f"{path} on the phone",
    )  # fmt: skip


def _pull(device: AdbDevice, remote: str | None) -> str | None:
    if remote is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "result"
        device.pull(remote, local)
        return local.read_text(errors="replace")


def _measure(meter, run, idle_seconds: float):
    return measure_window(meter, run, idle_seconds=idle_seconds, interval=0.05)  # an adb read takes ~10-50 ms


def _battery(device: AdbDevice, choice: str) -> tuple[AndroidBatteryMeter | None, list[str]]:
    if choice == "none":
        return None, []
    meter = AndroidBatteryMeter(device.command, device.serial)
    try:
        meter.check()
    except MeterUnavailable as exc:
        if choice == "android-battery":
            raise
        return None, [f"android-battery: {exc}"]
    return meter, []


def _phone_info(device: AdbDevice) -> dict[str, str]:
    props = {key: device.getprop(prop) for key, prop in (
        ("model", "ro.product.model"), ("abi", "ro.product.cpu.abi"), ("release", "ro.build.version.release"),
        ("soc", "ro.soc.model"), ("board", "ro.board.platform"))}  # fmt: skip
    if not props["model"]:
        raise AdbError(f"{device.label}: the phone answered no ro.product.model: is it an Android device?")
    return {"machine": props["abi"], "system": f"Android {props['release']}", "cpu": props["soc"] or props["board"],
            "model": props["model"]}  # fmt: skip
