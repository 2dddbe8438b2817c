"""The ``edgekit`` command: each command parses its options, calls the library and renders the result.

Errors a user can cause arrive as ``EdgekitError`` and leave as one line on stderr with the error's
exit code (2, or 1 for a numerical disagreement); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from edgekit._native import quiet_toolchain_logs
from edgekit.errors import EdgekitError, UnsupportedOptionError


class _State:
    debug = False


def _stderr_console() -> Console:
    """A console on a private copy of fd 2, so exporters silencing native output do not swallow progress."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no real fd (e.g. a test runner's buffer)
        return Console(stderr=True)
    return Console(file=os.fdopen(fd, "w", buffering=1), stderr=True)


out = Console()
err = Console(stderr=True)


class EdgekitGroup(click.Group):
    """Turns EdgekitError into one line and an exit code; anything unexpected into an 'internal error' line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except EdgekitError as exc:
            self._report(f"error: {exc}", exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # a bug in edgekit or a toolchain: one line, the trace under --debug
            self._report(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", exc)
            ctx.exit(1)

    @staticmethod
    def _report(line: str, exc: BaseException) -> None:
        if _State.debug:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        click.echo(line.splitlines()[0] if not _State.debug else line, err=True)


def _setup_logging(verbose: int, quiet: bool, debug: bool) -> None:
    global err
    err = _stderr_console()
    level = logging.DEBUG if debug else logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    handler = RichHandler(console=err, show_time=False, show_path=debug, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("edgekit").setLevel(level)
    quiet_toolchain_logs(logging.DEBUG if debug else logging.ERROR)
    if not debug:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@click.group(cls=EdgekitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgekit-sdk", prog_name="edgekit")
@click.option("-v", "--verbose", count=True, help="Log what each stage does.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--debug", is_flag=True, help="Full tracebacks and the toolchains' own output.")
def cli(verbose: int, quiet: bool, debug: bool) -> None:
    """Put PyTorch models on edge devices: export, verify, run."""
    _State.debug = debug
    if debug:
        os.environ["EDGEKIT_SHOW_NATIVE_OUTPUT"] = "1"
    else:
        os.environ.pop("EDGEKIT_SHOW_NATIVE_OUTPUT", None)
    _setup_logging(verbose, quiet, debug)


def _requiet() -> None:
    """torch resets its loggers' levels when first imported (inside a command): quiet them again."""
    quiet_toolchain_logs(logging.DEBUG if _State.debug else logging.ERROR)


def main() -> None:
    cli(prog_name="edgekit")


# -- models / targets / doctor -------------------------------------------------------------------


@cli.command()
@click.argument("pattern", default="*")
def models(pattern: str) -> None:
    """List the built-in models (PATTERN filters names, e.g. 'vit*')."""
    from edgekit.models import MODELS

    _requiet()
    table = Table(title="edgekit models")
    table.add_column("name", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("input")
    table.add_column("description", overflow="fold")
    for name in MODELS.names(pattern):
        entry = MODELS.get(name)
        spec = entry.build()
        shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in spec.input_specs)
        streams = " Streams: export with --streaming." if entry.streams else ""
        table.add_row(name, entry.family, _count(spec.parameters), shapes, entry.description + streams)
    out.print(table)


@cli.command()
def targets() -> None:
    """List the deployment targets and what each one means."""
    from edgekit.targets import TARGETS

    table = Table(title="edgekit targets")
    for col in ("target", "format", "delegate", "precision", "why"):
        table.add_column(col, overflow="fold")
    for name, t in TARGETS.items():
        table.add_row(name, t.format, t.delegate or "-", t.precision, t.why)
    out.print(table)


@cli.command()
def doctor() -> None:
    """Show which exporters and runtimes are installed, and their versions."""
    import importlib.util

    from edgekit.formats import get_format
    from edgekit.toolchain import PACKAGES, versions

    table = Table(title="toolchain")
    for col in ("package", "version", "used for"):
        table.add_column(col)
    for name, version in versions().items():
        table.add_row(name, version or "[red]not installed[/red]", PACKAGES[name])
    out.print(table)
    # Importability without importing: find_spec looks the modules up on the path only.
    has = lambda mod: importlib.util.find_spec(mod) is not None  # noqa: E731
    caps = Table(title="formats")
    for col in ("format", "export", "run", "install"):
        caps.add_column(col)
    exports = {
        "pte": has("torch") and has("executorch"),
        "tflite": has("torch") and has("litert_torch"),
        "onnx": has("torch") and has("onnxscript") and has("onnx"),
    }
    for fmt, can_export in exports.items():
        entry = get_format(fmt)
        caps.add_row(
            fmt, _yes(can_export), _yes(entry.runtime_class().installed()),
            f"pip install 'edgekit-sdk[{entry.runtime_extra}]' (run), [export] (export)",
        )  # fmt: skip
    out.print(caps)


# -- export --------------------------------------------------------------------------------------


def _parse_settings(items: tuple[str, ...]) -> dict[str, Any]:
    """--set key=value pairs; values parse as JSON when they can (numbers, lists, booleans)."""
    config: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UnsupportedOptionError("--set", item, ["key=value, e.g. --set depth=2"])
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            config[key] = raw
    return config


_set_option = click.option(
    "-s",
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a model config value (repeatable), e.g. --set depth=2.",
)


@cli.command()
@click.argument("model")
@click.option("-t", "--target", help="Device preset (see `edgekit targets`).")
@click.option("-f", "--format", "fmt", help="pte, tflite or onnx (overrides the target's format).")
@click.option("--delegate", help="pte: xnnpack (default) or portable.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), help="Bundle directory.")
@click.option("-w", "--weights", type=click.Path(dir_okay=False), help="Local weights file to load first.")
@click.option("--allow-mismatch", is_flag=True, help="Keep the bundle even if it disagrees with PyTorch.")
@click.option("--samples", default=8, show_default=True, help="Inputs compared with PyTorch.")
@click.option("--no-fold", is_flag=True, help="Keep BatchNorm layers instead of folding them into neighbours.")
@click.option(
    "--int8",
    "int8",
    is_flag=False,
    flag_value="static",
    default=None,
    type=click.Choice(["static", "dynamic"]),
    help="Quantize to INT8: static (calibrated activations, the default) or dynamic (weights only).",
)
@click.option("--calib", type=click.Path(exists=True), help="Calibration inputs: .npy / .npz file or a folder of them.")
@click.option("--calib-samples", default=128, show_default=True, help="Calibration samples used (static INT8).")
@click.option(
    "--max-accuracy-drop",
    type=float,
    default=2.0,
    show_default=True,
    help="INT8: held-out accuracy points the bundle may lose against FP32 before the export fails.",
)
@click.option("--streaming", is_flag=True, help="Export the streaming form: frames + state in, prediction + state out.")
@click.option("--chunk", default=1, show_default=True, help="--streaming: frames per call.")
@_set_option
def export(
    model, target, fmt, delegate, out_dir, weights, allow_mismatch, samples, no_fold, int8, calib, calib_samples,
    max_accuracy_drop, streaming, chunk, settings,
) -> None:  # fmt: skip
    """Export MODEL (a built-in name, file.py:factory or package.module:factory) to a verified bundle."""
    from edgekit.exporters.pipeline import export as run_export
    from edgekit.types import QualityGate

    _requiet()
    with err.status("exporting", spinner="dots") as status:
        result = run_export(
            model,
            target=target,
            format=fmt,
            delegate=delegate,
            out_dir=out_dir,
            weights=weights,
            config=_parse_settings(settings),
            allow_mismatch=allow_mismatch,
            samples=samples,
            fold=not no_fold,
            on_stage=lambda msg: status.update(f"{model}: {msg}"),
            precision={None: None, "static": "int8", "dynamic": "int8-dynamic"}[int8],
            calib=calib,
            calib_samples=calib_samples,
            quality=QualityGate(max_accuracy_drop=max_accuracy_drop),
            streaming=streaming,
            chunk=chunk,
        )
    _render_export(result)
    if not result.passed:
        err.print("[yellow]warning:[/yellow] kept although it disagrees with PyTorch (--allow-mismatch)")


def _render_export(result) -> None:
    m, v = result.manifest, result.validation
    table = Table(title=f"exported {m['model']['name']} -> {result.bundle_dir}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("format", f"{m['format']}" + (f" ({m['delegate']})" if m.get("delegate") else ""))
    table.add_row("target", m.get("target") or "-")
    table.add_row("parameters", _count(m["model"]["parameters"]))
    quantization = m.get("quantization")
    if quantization:
        calibration = quantization.get("calibration")
        table.add_row("precision", f"{quantization['precision']} ({quantization['tool']})")
        table.add_row("weights / activations", f"{quantization['weights']}; {quantization['activations']}")
        if calibration:
            table.add_row("calibration", f"{calibration['samples']} samples from {calibration['source']}")
    for name, entry in m["files"].items():
        table.add_row(name, _size(entry["bytes"]))
    transforms = m.get("transforms", {})
    fold = transforms.get("fold_norms", {})
    if "total" in fold:
        detail = ", ".join(f"{k} x{n}" for k, n in fold["folded"].items()) or "none present"
        table.add_row("norms folded", f"{fold['total']} ({detail}); {transforms.get('norms_left', 0)} left")
    if len(m["graphs"]) > 1:
        table.add_row("graphs", ", ".join(g["name"] for g in m["graphs"]))
    stream = m.get("extras", {}).get("stream")
    if stream:
        table.add_row("streaming", f"{stream['chunk']} frame(s) of {stream['features']} per call, "
                                   f"{len(stream['state'])} state tensors (zeros to start)")  # fmt: skip
    status = "[green]passed[/green]" if v.passed else "[red]FAILED[/red]"
    table.add_row("verification", f"{status}: {v.summary()}")
    spikes = next((p for p in getattr(v, "per_output", ()) if p.get("name") == "spikes"), None)
    if spikes:
        table.add_row("spikes", f"{spikes['sequences_identical']}/{spikes['sequences']} sequences identical, "
                                f"{spikes['near_threshold_flips']} near-threshold flip(s), "
                                f"{spikes['unexplained_flips']} unexplained")  # fmt: skip
    undelegated = m["export"].get("undelegated_ops")
    if undelegated is not None:
        ops = ", ".join(f"{k} x{n}" for k, n in undelegated.items()) or "none"
        table.add_row("ops outside delegate", f"{sum(undelegated.values())} ({ops})")
    table.add_row("export time", f"{m['export']['seconds']:.1f} s")
    out.print(table)


# -- run -----------------------------------------------------------------------------------------


@cli.command()
@click.argument("bundle", type=click.Path())
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="FILE",
    help="A .npy per input (in order, or name=file.npy), or one .npz.",
)
@click.option("--random", "use_random", is_flag=True, help="Run on random inputs of the right shape.")
@click.option("--graph", help="Graph of a multi-graph bundle.")
@click.option("--threads", type=int, help="Runtime threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the outputs as JSON.")
@click.option("--seed", default=0, help="Seed for --random.")
def run(bundle, inputs, use_random, graph, threads, as_json, seed) -> None:
    """Run a bundle (or a bare .pte/.tflite/.onnx file) on inputs and print the outputs."""
    from edgekit.bundle import MANIFEST_NAME, read_bundle
    from edgekit.errors import InputError
    from edgekit.inputs import inputs_from_files, random_inputs
    from edgekit.runtimes import load

    if bool(inputs) == use_random:
        raise InputError("give the inputs with --input FILE.npy (repeatable) or ask for --random, not both")
    # A bundle is read (and its hashes checked) once; a bare model file has no manifest.
    source = read_bundle(bundle) if (Path(bundle) / MANIFEST_NAME).is_file() else bundle
    manifest = source.manifest if not isinstance(source, str) else {}
    with load(source, graph=graph, threads=threads) as runtime:
        feed = (
            random_inputs(runtime.input_specs, seed) if use_random else inputs_from_files(runtime.input_specs, inputs)
        )
        start = time.perf_counter()
        outputs = runtime.run(feed)
        elapsed_ms = (time.perf_counter() - start) * 1e3
    class_names = (manifest.get("model") or {}).get("class_names")
    top = (
        _top_k(outputs, class_names)
        if (manifest.get("model") or {}).get("task", "classification") == "classification"
        else None
    )
    if as_json:
        payload = {
            "bundle": str(bundle),
            "runtime": type(runtime).__name__,
            "backend": runtime.backend or None,
            "latency_ms": elapsed_ms,
            "outputs": {
                k: {"shape": list(v.shape), "dtype": str(v.dtype), "values": v.tolist()} for k, v in outputs.items()
            },
            "top": top,
        }
        click.echo(json.dumps(payload))
        return
    table = Table(title=f"{bundle} ({runtime.name}, {elapsed_ms:.2f} ms)")
    for col in ("output", "shape", "dtype", "min", "max", "mean"):
        table.add_column(col)
    for name, value in outputs.items():
        v = value.astype(np.float64)
        table.add_row(
            name, str(list(value.shape)), str(value.dtype), f"{v.min():.4g}", f"{v.max():.4g}", f"{v.mean():.4g}"
        )
    out.print(table)
    if top:
        ranking = Table(title="top classes (first output, softmax)")
        for col in ("rank", "class", "probability"):
            ranking.add_column(col)
        for i, row in enumerate(top, 1):
            ranking.add_row(str(i), row["class"], f"{row['probability']:.4f}")
        out.print(ranking)


def _top_k(outputs: dict[str, np.ndarray], class_names: list[str] | None, k: int = 5) -> list[dict] | None:
    first = next(iter(outputs.values()))
    if first.ndim != 2 or first.shape[0] != 1 or first.dtype.kind != "f":
        return None
    logits = first[0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)[:k]
    name = lambda i: class_names[i] if class_names and i < len(class_names) else str(i)  # noqa: E731
    return [{"index": int(i), "class": name(int(i)), "probability": float(probs[i])} for i in order]


# -- train / eval --------------------------------------------------------------------------------


@cli.command()
@click.argument("model")
@click.option("--data", default="digits", show_default=True, help="Built-in dataset.")
@click.option("--epochs", default=30, show_default=True)
@click.option("--lr", default=3e-3, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="Weights file to write.")
@_set_option
def train(model, data, epochs, lr, batch_size, seed, output, settings) -> None:
    """Train MODEL on a built-in dataset and save its weights (held-out accuracy printed)."""
    from edgekit.models import resolve_model
    from edgekit.training import save_weights, train_classifier

    _requiet()
    spec = resolve_model(model, **_parse_settings(settings))
    from rich.progress import Progress

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"training {spec.name} on {data}", total=epochs)
        result = train_classifier(
            spec,
            data,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            on_epoch=lambda e, loss, acc: progress.update(
                task, completed=e, description=f"epoch {e}/{epochs} loss {loss:.3f} acc {acc:.1%}"
            ),
        )
    save_weights(output, spec, {"dataset": data, "test_accuracy": result.test_accuracy, "epochs": epochs})
    out.print(
        f"{spec.name}: held-out accuracy [bold]{result.test_accuracy:.2%}[/bold] on {data} after {epochs} epochs "
        f"({result.train_seconds:.1f} s, {_count(spec.parameters)} parameters) -> {output}",
        soft_wrap=True,
    )


@cli.command(name="eval")
@click.argument("target")
@click.option("--data", default=None, help="Built-in dataset (default: the model's own).")
@click.option("-w", "--weights", type=click.Path(dir_okay=False), help="Weights file (models only).")
@_set_option
def evaluate(target, data, weights, settings) -> None:
    """Held-out accuracy of a MODEL (with --weights) or of an exported BUNDLE."""
    from edgekit.evaluation import evaluate_bundle, evaluate_model

    if Path(target).exists():
        result = evaluate_bundle(target, data)
    else:
        result = evaluate_model(target, data, weights=weights, config=_parse_settings(settings))
    out.print(
        f"{result.subject}: accuracy [bold]{result.accuracy:.2%}[/bold] on {result.samples} held-out "
        f"{result.dataset} samples ({result.runner})",
        soft_wrap=True,
    )


# -- profile / bench --------------------------------------------------------------------------------

_ENERGY_HELP = "auto (first meter found, else an estimate), rapl, hwmon, pi5-pmic, android-battery, estimate, none"


@cli.command(name="profile")
@click.argument("bundle", type=click.Path())
@click.option("--runs", default=50, show_default=True, help="Timed runs per graph.")
@click.option("--duration", type=float, help="Keep timing for at least this many seconds.")
@click.option("--warmup", default=5, show_default=True)
@click.option("--threads", type=int, help="Runtime threads.")
@click.option("--energy", default="auto", show_default=True, help=_ENERGY_HELP)
@click.option("--idle", "idle_seconds", default=1.0, show_default=True, help="Idle baseline seconds (meters).")
@click.option("--device", help="Row of the energy table for estimates (default: detected).")
@click.option("--ops", is_flag=True, help="Also time each operator (ExecuTorch ETDump, ONNX Runtime profiler).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the full report as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write every sample as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write latency (and power) plots.")
def profile_command(bundle, runs, duration, warmup, threads, energy, idle_seconds, device, ops, json_path, csv_path,
                    plot_path) -> None:  # fmt: skip
    """Latency percentiles, load time, memory and energy per inference of BUNDLE on this device."""
    from edgekit.profiling import report as render
    from edgekit.profiling.profiler import profile

    with err.status("profiling", spinner="dots"):
        result = profile(bundle, runs=runs, warmup=warmup, duration=duration, threads=threads, energy=energy,
                         idle_seconds=idle_seconds, device=device)  # fmt: skip
    out.print(render.profile_table(result))
    for g in result.graphs:
        if g.energy:
            out.print(f"energy ({g.graph}): {g.energy.source}: {g.energy.detail}", soft_wrap=True)
    for note in result.energy_notes:
        out.print(f"[dim]no meter: {note}[/dim]", soft_wrap=True)
    if ops:
        from edgekit.bundle import read_bundle
        from edgekit.profiling.operators import operator_profile
        from edgekit.validate import make_inputs

        b = read_bundle(bundle)
        stats = operator_profile(b, make_inputs(b.graph().inputs, 1)[0], runs=min(runs, 20), threads=threads)
        out.print(render.ops_table(stats))
    if json_path:
        Path(json_path).write_text(json.dumps(result.to_json(), indent=2))
    if csv_path:
        render.write_csv(result, csv_path)
    if plot_path:
        render.plot(result, plot_path)


@cli.command()
@click.argument("model")
@click.option("--formats", default="pte,tflite,onnx", show_default=True, help="Comma-separated formats.")
@click.option("-o", "--output", "out_dir", default="build/bench", show_default=True, type=click.Path(file_okay=False))
@click.option("-w", "--weights", type=click.Path(dir_okay=False))
@click.option("--runs", default=50, show_default=True)
@click.option("--energy", default="auto", show_default=True, help=_ENERGY_HELP)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the rows as JSON.")
@_set_option
def bench(model, formats, out_dir, weights, runs, energy, json_path, settings) -> None:
    """Export MODEL to every format, verify, profile, and print one comparison table."""
    from edgekit.formats import get_format
    from edgekit.profiling.bench import bench as run_bench
    from edgekit.profiling.report import bench_table

    _requiet()
    names = [get_format(f.strip()).name for f in formats.split(",") if f.strip()]
    with err.status("bench", spinner="dots") as status:
        rows = run_bench(model, names, out_dir, config=_parse_settings(settings), weights=weights, runs=runs,
                         energy=energy, on_stage=status.update)  # fmt: skip
    out.print(bench_table(rows, f"edgekit bench {model} ({runs} runs per format)"))
    for r in rows:
        if r.status != "ok":
            out.print(f"[red]{r.format}[/red]: {r.detail}", soft_wrap=True)
    if json_path:
        Path(json_path).write_text(json.dumps([r.to_json() for r in rows], indent=2))


@cli.command(name="profile-device")
@click.option("--model", default="vit_tiny", show_default=True, help="Model whose blocks are timed.")
@click.option("--name", help="Device name in the file (default: the host name).")
@click.option("--energy", default="auto", show_default=True, help="Meter for the idle power (auto, a name, none).")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="device.json to write.")
@_set_option
def profile_device_command(model, name, energy, output, settings) -> None:
    """Measure this device for the splitter: per-block latency, memory, matmul throughput, idle power."""
    from edgekit.profiling.device import profile_device

    _requiet()
    with err.status("measuring this device", spinner="dots"):
        device = profile_device(model, _parse_settings(settings), name=name, energy=energy)
    Path(output).write_text(json.dumps(device.to_json(), indent=2))
    table = Table(title=f"{device.name}: {device.model} blocks (PyTorch eager, median ms)")
    table.add_column("block")
    table.add_column("ms", justify="right")
    for block in device.blocks:
        table.add_row(block["name"], f"{block['ms']:.3f}")
    table.add_row("[bold]total[/bold]", f"[bold]{device.total_ms:.3f}[/bold]")
    out.print(table)
    available = device.memory_available_bytes
    out.print(
        f"memory available {available / 2**30:.1f} GiB, fp32 matmul {device.matmul_gflops:.1f} GFLOP/s, "
        f"idle power {'-' if device.idle_watts is None else f'{device.idle_watts:.2f} W'} -> {output}",
        soft_wrap=True,
    )


# -- rendering helpers ---------------------------------------------------------------------------


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _yes(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]no[/red]"


def _register_split_commands() -> None:
    from edgekit.cli_generate import generate
    from edgekit.cli_split import COMMANDS
    from edgekit.cli_stream import stream

    for command in (*COMMANDS, stream, generate):
        cli.add_command(command)


if __name__ == "__main__":
    # Run the imported module's group (the one the split commands register on), not this __main__ copy.
    from edgekit.cli import main as _main

    _main()
else:
    _register_split_commands()
