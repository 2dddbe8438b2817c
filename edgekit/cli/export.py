"""``export`` (a model to a verified bundle) and ``run`` (a bundle on inputs)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from edgekit.cli import render
from edgekit.cli.app import requiet, session
from edgekit.cli.options import parse_settings, set_option, tls_option, token_option


@click.command()
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
@click.option(
    "--int8-recipe",
    help="Static INT8: a recipe by name instead of the one chosen for the CPU (see edgekit/exporters/int8_recipes.py).",
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
@click.option("--verify-on", "verify_on", multiple=True, metavar="DEVICE",
              help="Verify again on a worker: NAME=HOST:PORT or a NAME found over mDNS (repeatable).")  # fmt: skip
@tls_option
@token_option
@click.option(
    "--token-merge",
    "token_merge",
    metavar="R,R,...",
    help="One graph per token-merge rate (tokens merged per block), e.g. 0,4,8,12 (vit_*, slab_*).",
)
@set_option
def export(
    model, target, fmt, delegate, out_dir, weights, allow_mismatch, samples, no_fold, int8, int8_recipe, calib,
    calib_samples, max_accuracy_drop, streaming, chunk, verify_on, tls, token_file, token_merge, settings,
) -> None:  # fmt: skip
    """Export MODEL (a built-in name, file.py:factory or package.module:factory) to a verified bundle."""
    from edgekit.exporters.pipeline import export as run_export
    from edgekit.types import QualityGate

    requiet()
    ui = session()
    devices = _device_runners(verify_on, tls, token_file) if verify_on else ()
    with ui.err.status("exporting", spinner="dots") as status:
        result = run_export(
            model,
            target=target,
            format=fmt,
            delegate=delegate,
            out_dir=out_dir,
            weights=weights,
            config=parse_settings(settings),
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
            verify_on=devices,
            int8_recipe=int8_recipe,
            token_merge=token_merge,
        )
    ui.out.print(export_table(result))
    if not result.passed:
        ui.err.print("[yellow]warning:[/yellow] kept although it disagrees with PyTorch (--allow-mismatch)")


def _device_runners(targets: tuple[str, ...], tls: str | None, token_file: str | None) -> list:
    from edgekit.fleet.auth import ClientAuth
    from edgekit.splitter.remote_profile import parse_target
    from edgekit.splitter.remote_verify import DeviceRunner

    auth = ClientAuth.from_options(tls, token_file)
    named = [parse_target(t) for t in targets]
    missing = [name for name, address in named if address is None]
    if missing:
        from edgekit.fleet.discovery import resolve

        found = resolve(missing, auth.identity)
        named = [(name, address or found[name]) for name, address in named]
    return [DeviceRunner(name, address, auth) for name, address in named]


def export_table(result):
    """Two columns (what, value), wrapped to the terminal: every value fits at 80 columns."""
    m, v = result.manifest, result.validation
    table = render.table(f"exported {m.model.name} -> {render.text(result.bundle_dir)}",
                         {"": "left", " ": "left"}, show_header=False)  # fmt: skip
    table.columns[0].style = "bold"
    table.add_row("format", m.format + (f" ({m.delegate})" if m.delegate else ""))
    table.add_row("target", m.target or "-")
    table.add_row("parameters", render.count(m.model.parameters))
    q = m.quantization
    if q is not None:
        table.add_row("precision", f"{q.precision} ({render.text(q.scheme.tool)})")
        table.add_row("weights / activations", f"{q.scheme.weights}; {q.scheme.activations}")
        if q.scheme.recipe is not None:
            cpu = q.scheme.cpu
            table.add_row("int8 recipe", render.text(q.scheme.recipe + (f" for {cpu.summary()}" if cpu else "")))
        if q.calibration_source is not None:
            table.add_row("calibration", f"{q.calibration_samples} samples from {render.text(q.calibration_source)}")
    for name, entry in m.files.items():
        table.add_row(render.text(name), render.size(entry.bytes))
    fold = m.transforms
    if fold is not None and fold.skipped is None:
        detail = ", ".join(f"{k} x{n}" for k, n in fold.folded.items()) or "none present"
        table.add_row("norms folded", f"{fold.total} ({detail}); {fold.norms_left} left")
    merge = m.extras.token_merge
    if merge is not None:
        for rate in merge.rates:
            flops = m.graph(rate.graph).flops
            accuracy = "" if rate.accuracy is None else f", accuracy {rate.accuracy:.2%}"
            table.add_row(f"graph {rate.graph}", f"r={rate.r}, {render.count(flops or 0)}FLOPs, MLP tokens "
                                                 f"{rate.mlp_tokens[0]}->{rate.mlp_tokens[-1]}{accuracy}")  # fmt: skip
    elif len(m.graphs) > 1:
        table.add_row("graphs", ", ".join(g.name for g in m.graphs))
    stream = m.extras.stream
    if stream is not None:
        table.add_row("streaming", f"{stream.chunk} frame(s) of {stream.features} per call, "
                                   f"{len(stream.state)} state tensors (zeros to start)")  # fmt: skip
    status = "[green]passed[/green]" if v.passed else "[red]FAILED[/red]"
    table.add_row("verification", f"{status}: {v.summary()}")
    spikes = next((p for p in getattr(v, "per_output", ()) if p.get("name") == "spikes"), None)
    if spikes:
        table.add_row("spikes", f"{spikes['sequences_identical']}/{spikes['sequences']} sequences identical, "
                                f"{spikes['near_threshold_flips']} near-threshold flip(s), "
                                f"{spikes['unexplained_flips']} unexplained")  # fmt: skip
    for d in m.verified_on:
        mark = "[green]passed[/green]" if d.validation.passed else "[red]FAILED[/red]"
        where = f"on {render.text(d.device)} ({d.machine or '?'})"
        table.add_row(where, f"{mark}: {d.validation.summary()}")
    undelegated = m.export.undelegated_ops
    if undelegated is not None:
        ops = ", ".join(f"{k} x{n}" for k, n in undelegated.items()) or "none"
        table.add_row("ops outside delegate", f"{sum(undelegated.values())} ({ops})")
    table.add_row("export time", f"{m.export.seconds:.1f} s")
    return table


@click.command()
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
@click.option(
    "--budget-ms",
    "budget_ms",
    type=float,
    help="Token-merging bundle: run the most accurate rate whose p90 on this device fits (timed once, cached).",
)
def run(bundle, inputs, use_random, graph, threads, as_json, seed, budget_ms) -> None:
    """Run a bundle (or a bare .pte/.tflite/.onnx file) on inputs and print the outputs."""
    from edgekit.bundle import MANIFEST_NAME, read_bundle
    from edgekit.errors import InputError
    from edgekit.inputs import inputs_from_files, random_inputs
    from edgekit.runtimes import load

    if bool(inputs) == use_random:
        raise InputError("give the inputs with --input FILE.npy (repeatable) or ask for --random, not both")
    # A bundle is read (and its hashes checked) once; a bare model file has no manifest.
    source = read_bundle(bundle) if (Path(bundle) / MANIFEST_NAME).is_file() else bundle
    model = source.manifest.model if not isinstance(source, str) else None
    with load(source, graph=graph, threads=threads, budget_ms=budget_ms) as runtime:
        feed = (
            random_inputs(runtime.input_specs, seed) if use_random else inputs_from_files(runtime.input_specs, inputs)
        )
        start = time.perf_counter()
        outputs = runtime.run(feed)
        elapsed_ms = (time.perf_counter() - start) * 1e3
    classifies = model is None or model.task == "classification"
    top = top_k(outputs, model.class_names if model else None) if classifies else None
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
            "budget": runtime.budget.to_json() if runtime.budget else None,
        }
        click.echo(json.dumps(payload))
        return
    ui = session()
    if runtime.budget is not None:
        ui.out.print(budget_table(runtime.budget))
    table = render.table(
        f"{render.text(bundle)} ({runtime.name}, {elapsed_ms:.2f} ms)",
        {"output": "left", "shape": "left", "dtype": "left", "min": "right", "max": "right", "mean": "right"},
    )
    for name, value in outputs.items():
        v = value.astype(np.float64)
        table.add_row(
            render.text(name), str(list(value.shape)), str(value.dtype), f"{v.min():.4g}", f"{v.max():.4g}",
            f"{v.mean():.4g}",
        )  # fmt: skip
    ui.out.print(table)
    if top:
        ranking = render.table(
            "top classes (first output, softmax)", {"rank": "right", "class": "left", "probability": "right"}
        )
        for i, row in enumerate(top, 1):
            ranking.add_row(str(i), render.text(row["class"]), f"{row['probability']:.4f}")
        ui.out.print(ranking)


def budget_table(choice):
    """Every rate's p50 / p90 on this device and which one the budget chose."""
    source = "cached for this device" if choice.cached else "measured now"
    table = render.table(f"budget {choice.budget_ms:g} ms: {choice.graph} ({source})",
                         {"graph": "left", "r": "right", "p50 ms": "right", "p90 ms": "right", "accuracy": "right",
                          "": "left"})  # fmt: skip
    for t in choice.timings:
        mark = ("chosen" if choice.fits else "chosen (fastest; none fits)") if t.graph == choice.graph else ""
        accuracy = "-" if t.accuracy is None else f"{t.accuracy:.2%}"
        table.add_row(t.graph, str(t.r), f"{t.p50_ms:.3f}", f"{t.p90_ms:.3f}", accuracy, mark)
    return table


def top_k(outputs: dict[str, np.ndarray], class_names: tuple[str, ...] | None, k: int = 5) -> list[dict] | None:
    from edgekit.validate import softmax

    first = next(iter(outputs.values()))
    if first.ndim != 2 or first.shape[0] != 1 or first.dtype.kind != "f":
        return None
    probs = softmax(first[0])
    order = np.argsort(-probs)[:k]
    name = lambda i: class_names[i] if class_names and i < len(class_names) else str(i)  # noqa: E731
    return [{"index": int(i), "class": name(int(i)), "probability": float(probs[i])} for i in order]


COMMANDS = (export, run)
