"""``profile`` (a bundle on this device), ``bench`` (export + verify + profile every format) and
``profile-device`` (this device as the splitter sees it)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit.cli import render
from edgekit.cli.app import requiet, session
from edgekit.cli.options import ENERGY_HELP, parse_settings, set_option, tls_option, token_option
from edgekit.errors import InputError


@click.command(name="profile")
@click.argument("bundle", type=click.Path())
@click.option("--runs", default=50, show_default=True, help="Timed runs per graph.")
@click.option("--duration", type=float, help="Keep timing for at least this many seconds.")
@click.option("--warmup", default=5, show_default=True)
@click.option("--threads", type=int, help="Runtime threads.")
@click.option("--energy", default="auto", show_default=True, help=ENERGY_HELP)
@click.option("--idle", "idle_seconds", default=1.0, show_default=True, help="Idle baseline seconds (meters).")
@click.option("--device", help="Row of the energy table for estimates (default: detected).")
@click.option("--ops", is_flag=True, help="Also time each operator (ExecuTorch ETDump, ONNX Runtime profiler).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the full report as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write every sample as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write latency (and power) plots.")
@click.option("--on", "on_device", help="Run on a worker (NAME=HOST:PORT, or a NAME found over mDNS) or on an "
              "Android phone with its own benchmark tool (adb, or adb:SERIAL).")  # fmt: skip
@click.option("--tool", "tool_path", help="With --on adb: the benchmark tool's path on the phone (default: found "
              "in /data/local/tmp or on PATH).")  # fmt: skip
@tls_option
@token_option
def profile_command(bundle, runs, duration, warmup, threads, energy, idle_seconds, device, ops, json_path, csv_path,
                    plot_path, on_device, tool_path, tls, token_file) -> None:  # fmt: skip
    """Latency percentiles, load time, memory and energy per inference of BUNDLE on this device (or --on one)."""
    from edgekit.profiling import report
    from edgekit.profiling.profiler import profile

    ui = session()
    if tool_path and not (on_device or "").startswith("adb"):
        raise InputError("--tool names a benchmark tool on a phone: use it with --on adb[:SERIAL]")
    if on_device and _is_phone(on_device):
        if ops or duration:
            raise InputError("--ops and --duration run with edgekit's own timer; the phone's tool takes --runs")
        result = _profile_phone(bundle, on_device, tool_path, runs, warmup, threads, energy, idle_seconds)
        ui.out.print(f"profiled on {render.text(result.device)} by its own tool", soft_wrap=True)
    elif on_device:
        if ops:
            raise InputError("--ops runs on this machine only; drop it with --on")
        result = _profile_remote(bundle, on_device, tls, token_file, runs, warmup, duration, threads, energy,
                                 idle_seconds)  # fmt: skip
        ui.out.print(f"profiled on {render.text(result.device)} (worker pid {result.pid})", soft_wrap=True)
    else:
        with ui.err.status("profiling", spinner="dots"):
            result = profile(bundle, runs=runs, warmup=warmup, duration=duration, threads=threads, energy=energy,
                             idle_seconds=idle_seconds, device=device)  # fmt: skip
    ui.out.print(report.profile_table(result))
    merge = _merge_rates(bundle, result)
    if merge is not None:
        ui.out.print(merge[1])
    for g in result.graphs:
        if g.energy:
            ui.out.print(f"energy ({g.graph}): {g.energy.source}: {render.text(g.energy.detail)}", soft_wrap=True)
    for note in result.energy_notes:
        ui.out.print(f"[dim]no meter: {render.text(note)}[/dim]", soft_wrap=True)
    if ops:
        from edgekit.bundle import read_bundle
        from edgekit.inputs import make_inputs
        from edgekit.profiling.operators import operator_profile

        b = read_bundle(bundle)
        stats = operator_profile(b, make_inputs(b.graph().inputs, 1)[0], runs=min(runs, 20), threads=threads)
        ui.out.print(report.ops_table(stats))
    if json_path:
        Path(json_path).write_text(json.dumps(result.to_json(), indent=2))
    if csv_path:
        report.write_csv(result, csv_path)
    if plot_path and merge is not None:  # the curve at the path asked for, the latency plots beside it
        from edgekit.profiling.rates import plot_rates

        plot_rates(merge[0], plot_path, f"{result.model} ({result.format}): token-merge rates")
        latency_path = Path(plot_path).with_name(f"{Path(plot_path).stem}-latency{Path(plot_path).suffix or '.png'}")
        report.plot(result, latency_path)
        ui.out.print(f"accuracy-latency curve -> {render.text(plot_path)}, latency plots -> "
                     f"{render.text(str(latency_path))}", soft_wrap=True)  # fmt: skip
    elif plot_path:
        report.plot(result, plot_path)


def _is_phone(target: str) -> bool:
    from edgekit.profiling.phone import parse_adb_target

    return parse_adb_target(target) is not False


def _profile_phone(bundle, target, tool_path, runs, warmup, threads, energy, idle_seconds):
    import os

    from edgekit.profiling.adb import AdbDevice
    from edgekit.profiling.phone import PhoneSettings, parse_adb_target, profile_on_phone

    device = AdbDevice(os.environ.get("EDGEKIT_ADB", "adb"), parse_adb_target(target) or None)
    settings = PhoneSettings(runs, warmup, threads, energy, idle_seconds, tool_path)
    with session().err.status(f"profiling on {device.label}", spinner="dots"):
        return profile_on_phone(bundle, device, settings)


def _profile_remote(bundle, target, tls, token_file, runs, warmup, duration, threads, energy, idle_seconds):
    from edgekit.fleet.auth import ClientAuth
    from edgekit.splitter.remote_profile import ProfileSettings, profile_on

    auth = ClientAuth.from_options(tls, token_file)
    name, address = _worker_address(target, auth)
    settings = ProfileSettings(runs, warmup, duration, threads, energy, idle_seconds)
    with session().err.status(f"profiling on {name} ({address})", spinner="dots"):
        return profile_on(bundle, name, address, auth, settings)


def _worker_address(target, auth) -> tuple[str, str]:
    """(name, host:port) of ``--on NAME=HOST:PORT``, or of ``--on NAME`` found over mDNS (fingerprint-checked)."""
    from edgekit.splitter.remote_profile import parse_target

    name, address = parse_target(target)
    if address is None:
        from edgekit.fleet.discovery import resolve

        address = resolve([name], auth.identity)[name]
    return name, address


def _profile_device_remote(target, tls, token_file, model, config, energy):
    from edgekit.fleet.auth import ClientAuth
    from edgekit.splitter.remote_profile import profile_device_on

    auth = ClientAuth.from_options(tls, token_file)
    name, address = _worker_address(target, auth)
    with session().err.status(f"measuring {name} ({address})", spinner="dots"):
        return profile_device_on(name, address, auth, model, config, energy)


def _merge_rates(bundle, result):
    """(rows, table) of a token-merging bundle's rates, or None for any other bundle."""
    from edgekit.bundle import read_bundle
    from edgekit.profiling.rates import rate_rows, rate_table

    manifest = read_bundle(bundle, verify=False).manifest  # profile() has checked the hashes
    layout = manifest.extras.token_merge
    if layout is None:
        return None
    rows = rate_rows(result, layout, {g.name: g.flops for g in manifest.graphs})
    where = f", accuracy on {layout.dataset} held-out" if layout.dataset else ""
    return rows, rate_table(rows, f"token-merge rates (speed-up: p50 against r={rows[0].r}{where})")


@click.command()
@click.argument("model")
@click.option("--formats", default="pte,tflite,onnx", show_default=True, help="Comma-separated formats.")
@click.option("-o", "--output", "out_dir", default="build/bench", show_default=True, type=click.Path(file_okay=False))
@click.option("-w", "--weights", type=click.Path(dir_okay=False))
@click.option("--runs", default=50, show_default=True)
@click.option("--energy", default="auto", show_default=True, help=ENERGY_HELP)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the rows as JSON.")
@set_option
def bench(model, formats, out_dir, weights, runs, energy, json_path, settings) -> None:
    """Export MODEL to every format, verify, profile, and print one comparison table."""
    from edgekit.formats import get_format
    from edgekit.profiling.bench import bench as run_bench
    from edgekit.profiling.report import bench_table

    requiet()
    ui = session()
    names = [get_format(f.strip()).name for f in formats.split(",") if f.strip()]
    with ui.err.status("bench", spinner="dots") as status:
        rows = run_bench(model, names, out_dir, config=parse_settings(settings), weights=weights, runs=runs,
                         energy=energy, on_stage=status.update)  # fmt: skip
    ui.out.print(bench_table(rows, f"edgekit bench {model} ({runs} runs per format)"))
    for r in rows:
        if r.status != "ok":
            ui.out.print(f"[red]{r.format}[/red]: {render.text(r.detail)}", soft_wrap=True)
    if json_path:
        Path(json_path).write_text(json.dumps([r.to_json() for r in rows], indent=2))


@click.command(name="profile-device")
@click.option("--model", default="vit_tiny", show_default=True, help="Model whose blocks are timed.")
@click.option("--name", help="Device name in the file (default: the host name).")
@click.option("--energy", default="auto", show_default=True, help="Meter for the idle power (auto, a name, none).")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="device.json to write.")
@click.option("--on", "on_device", help="Measure a worker's device instead: NAME=HOST:PORT, or a NAME found over mDNS.")
@tls_option
@token_option
@set_option
def profile_device_command(model, name, energy, output, on_device, tls, token_file, settings) -> None:
    """Measure this device (or --on a worker's) for the splitter: per-block latency, memory, matmul, idle power."""
    from edgekit.profiling.device import DeviceProfile, profile_device

    requiet()
    ui = session()
    if on_device:
        if name:
            raise InputError("--name names this device; a worker's profile carries the worker's name")
        data = _profile_device_remote(on_device, tls, token_file, model, parse_settings(settings), energy)
        Path(output).write_text(json.dumps(data, indent=2))
        fields = {k: data.get(k) for k in DeviceProfile.__dataclass_fields__ if k != "measured_by"}
        device = DeviceProfile(**fields)
    else:
        with ui.err.status("measuring this device", spinner="dots"):
            device = profile_device(model, parse_settings(settings), name=name, energy=energy)
        Path(output).write_text(json.dumps(device.to_json(), indent=2))
    if not device.blocks:
        ui.out.print(f"[yellow]blocks {render.text(device.blocks_timed_by)}[/yellow]", soft_wrap=True)
    table = render.table(f"{render.text(device.name)}: {device.model} blocks (PyTorch eager, median ms)",
                         {"block": "left", "ms": "right"})  # fmt: skip
    for block in device.blocks:
        table.add_row(block["name"], f"{block['ms']:.3f}")
    table.add_row("[bold]total[/bold]", f"[bold]{device.total_ms:.3f}[/bold]")
    ui.out.print(table)
    available = device.memory_available_bytes
    ui.out.print(
        f"memory available {available / 2**30:.1f} GiB, fp32 matmul {device.matmul_gflops:.1f} GFLOP/s, "
        f"idle power {'-' if device.idle_watts is None else f'{device.idle_watts:.2f} W'} -> {render.text(output)}",
        soft_wrap=True,
    )


COMMANDS = (profile_command, bench, profile_device_command)
