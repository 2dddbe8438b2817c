"""The split commands of ``edgekit``: ``split`` (plan), ``worker`` (serve shards), ``infer-split`` (run).

Rendering only -- the work is in ``edgekit.splitter``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgekit.cli import render
from edgekit.cli.app import requiet, session
from edgekit.cli.options import parse_settings, set_option, tls_option, token_option
from edgekit.cli.split_report import node_table, replica_lines, run_summary
from edgekit.cli.stop_signal import StopSignal
from edgekit.errors import InputError
from edgekit.validate import softmax


@click.command()
@click.argument("model")
@click.option("--devices", "devices_file", required=True, type=click.Path(dir_okay=False), help="devices.yaml.")
@click.option(
    "--strategy",
    default="edvit",
    show_default=True,
    help="edvit (class-wise, ED-ViT), pipeline (contiguous blocks per device) or auto (from estimates).",
)
@click.option("--partition", default="balanced", show_default=True, help="contiguous, balanced or confusion.")
@click.option("-w", "--weights", type=click.Path(dir_okay=False), help="Trained weights (else the model is trained).")
@click.option("--data", default="digits", show_default=True,
              help="Built-in dataset, or an .npz with x_train, y_train, x_test, y_test.")  # fmt: skip
@click.option("--epochs", default=30, show_default=True, help="Training epochs of the full model (without -w).")
@click.option("--finetune-epochs", default=40, show_default=True, help="Distillation epochs per sub-model.")
@click.option("--keep", type=float, help="Each shard's share of the model's parameters (default 1/N), within memory.")
@click.option("--latency-ms", type=float, help="Each shard's FLOPs within this many ms at its device's GFLOP/s.")
@click.option("--seed", default=0, show_default=True)
@click.option("--replicas", default=1, show_default=True,
              help="Devices per shard, where memory and runtimes allow (1: no replicas).")  # fmt: skip
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Plan directory.")
@set_option
def split(model, devices_file, strategy, partition, weights, data, epochs, finetune_epochs, keep, latency_ms, seed,
          replicas,
          out_dir, settings) -> None:  # fmt: skip
    """Split a ViT into class-wise pruned sub-models for the devices in devices.yaml (ED-ViT)."""
    from edgekit.splitter import load_devices
    from edgekit.splitter.edvit import SplitSettings, plan_split

    requiet()
    devices = load_devices(devices_file)
    options = SplitSettings(
        strategy=strategy, partition=partition, epochs=epochs, finetune_epochs=finetune_epochs, keep_ratio=keep,
        latency_ms=latency_ms, seed=seed, replicas=replicas,
    )  # fmt: skip
    with session().err.status("planning", spinner="dots") as status:
        plan = plan_split(
            model, devices, out_dir, weights=weights, data=data, config=parse_settings(settings),
            settings=options, on_stage=lambda msg: status.update(msg),
        )  # fmt: skip
    render_plan(plan)


def plan_table(plan):
    """One row per shard at 80 columns (the keep ratio, size and timing basis are in plan.json)."""
    report = plan.report
    full, fused = report["full"], report["split"]
    title = f"{plan.model['name']} split over {len(plan.devices)} devices ({plan.partition} classes)"
    columns = {"shard": "left", "device": "left", "classes": "left", "params": "right", "smaller": "right",
               "subset acc": "right", "est ms": "right"}  # fmt: skip
    table = render.table(title, columns, keep=("shard", "params", "smaller", "subset acc", "est ms"))
    for s in plan.shards:
        classes = ", ".join(render.text(plan.class_names[c]) for c in s.classes)
        table.add_row(
            s.name, f"{render.text(s.device)} ({s.format})", classes,
            render.count(s.parameters), f"{fused['size_reduction_per_shard'][s.name]:.1f}x",
            f"{fused['subset_accuracy'][s.name]:.1%}", f"{s.estimated_ms:.3f}",
        )  # fmt: skip
    table.add_row("full", "-", "all", render.count(full["feature_parameters"]), "1.0x", f"{full['accuracy']:.1%}", "-",
                  style="dim")  # fmt: skip
    return table


def render_plan(plan) -> None:
    auto = plan.report.get("auto")
    if auto:
        session().out.print(f"--strategy auto chose {auto['why']}", soft_wrap=True)
    if plan.strategy == "pipeline":
        from edgekit.cli.pipeline import render_pipeline_plan

        return render_pipeline_plan(plan)
    report = plan.report
    full, fused = report["full"], report["split"]
    table = plan_table(plan)
    session().out.print(table)
    degraded = ", ".join(f"without {k} {v:.1%}" for k, v in fused["degraded_accuracy"].items())
    session().out.print(
        f"held-out accuracy: full {full['accuracy']:.2%}, fused split {fused['accuracy']:.2%} "
        f"({fused['accuracy_drop_points']:+.2f} points lost); degraded: {degraded}\n"
        f"largest shard {fused['largest_shard_fraction']:.1%} of the full model; estimated critical path "
        f"{fused['critical_path_ms']:.3f} ms (shards timed here, scaled to each device; FLOP bound "
        f"{fused['critical_path_bound_ms']:.3f} ms) -> {plan.root}",
        soft_wrap=True,
    )
    for line in replica_lines(plan):
        session().out.print(line, soft_wrap=True)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless told).")
@click.option("--port", default=50051, show_default=True, help="Port (0 picks a free one and prints it).")
@click.option("--workdir", default="edgekit-worker", show_default=True, type=click.Path(file_okay=False),
              help="Where deployed shards are kept.")  # fmt: skip
@click.option("--name", help="Worker name in replies (default host:port).")
@click.option("--threads", type=int, help="Runtime threads per shard.")
@click.option("--max-message-mb", default=16, show_default=True, help="Largest gRPC message accepted.")
@tls_option
@token_option
@click.option("--insecure", is_flag=True, help="Allow a non-loopback address without authentication.")
@click.option("--grace", default=10.0, show_default=True, help="Seconds in-flight calls get to finish on SIGTERM.")
@click.option("--max-calls", default=16, show_default=True, help="Calls at once; more get RESOURCE_EXHAUSTED.")
@click.option("--announce/--no-announce", default=None,
              help="Announce over mDNS (default: when bound beyond loopback).")  # fmt: skip
@click.option("--profile", "profile_file", type=click.Path(dir_okay=False),
              help="device.json from `edgekit profile-device`: the GFLOP/s to announce (else measured).")  # fmt: skip
@click.option("--energy", default="auto", show_default=True,
              help="Meter kept running for a run's energy per node: auto, rapl, hwmon, pi5-pmic or none.")  # fmt: skip
def worker(host, port, workdir, name, threads, max_message_mb, tls, token_file, insecure, grace, max_calls, announce,
           profile_file, energy) -> None:  # fmt: skip
    """Serve shard bundles over gRPC: health, deploy (verified), inference."""
    from edgekit.fleet.auth import ServerAuth, is_loopback
    from edgekit.splitter.worker import start_worker

    auth = ServerAuth.from_options(tls, token_file, insecure)
    warning = auth.check_bind(host)
    if warning:
        click.echo(warning, err=True)
    name = name or (auth.identity.name if auth.identity else None)  # a TLS worker is the device its cert names
    running = start_worker(host, port, workdir, name, threads, max_message_bytes=max_message_mb << 20, auth=auth,
                           max_calls=max_calls, energy=energy)  # fmt: skip
    stop = StopSignal()
    announcer = None
    if announce or (announce is None and not is_loopback(host)):
        try:
            announcer = _announce(running, host, profile_file)
        except BaseException:
            running.stop(0)  # the server is already listening: its threads would keep the process alive
            raise
    meter = running.service.energy.meter.name if running.service.energy else "none"
    click.echo(f"edgekit worker listening on {host}:{running.port} (auth {auth.label}, energy {meter}, "
               f"workdir {workdir}; {'announced over mDNS; ' if announcer else ''}stored shards load in the "
               "background)")  # fmt: skip
    sys.stdout.flush()
    stop.wait()
    # Draining comes first: callers must see NOT_SERVING at once, and the mDNS goodbye (zeroconf's close) can take
    # its time. (A netns test once saw a worker still SERVING 10 s after SIGTERM when the close came first.)
    drained = running.drain(grace)
    if announcer:
        announcer.close()
    if not drained:
        session().err.print(f"grace period of {grace:g} s over: cutting {running.gate.active} call(s) short")
    running.stop()


def _announce(running, host: str, profile_file: str | None):
    from edgekit.fleet.discovery import Announcer, this_device

    if profile_file:
        from edgekit.splitter.devices import read_profile

        gflops = float(read_profile(Path(profile_file), "--profile").get("matmul_gflops") or 0)
    else:
        from edgekit.profiling.device import matmul_gflops

        gflops = matmul_gflops(size=256, repeats=5)
    identity = running.auth.identity
    return Announcer(this_device(running.service.name, host, running.port, running.service.formats, gflops,
                                 identity.fingerprint if identity else None, running.auth.label))  # fmt: skip


@click.command(name="infer-split")
@click.argument("plan_dir", type=click.Path())
@click.option("--workers", help="name=host:port,... or auto (mDNS; default: the addresses in devices.yaml).")
@click.option("-i", "--input", "input_file", type=click.Path(dir_okay=False), help="A .npy image batch to classify.")
@click.option("--eval", "eval_data", help="Evaluate on a dataset's held-out split (digits, or an .npz).")
@click.option("--limit", type=int, help="Evaluate on the first N held-out samples only.")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds a request may take, all workers included.")
@click.option("--degraded-ok", is_flag=True, help="Answer from the remaining shards when a worker fails.")
@click.option("--redeploy", is_flag=True, help="Upload every shard even if the worker already holds it.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the result as JSON.")
@click.option("--hedge-after", help="Also send a shard call to a replica after auto (its p95) or MS milliseconds.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="With --eval: the run report (every request's record) as JSON.")  # fmt: skip
@click.option("--timeline", "timeline_path", type=click.Path(dir_okay=False),
              help="With --eval: a PNG timeline, one lane per worker.")  # fmt: skip
@tls_option
@token_option
def infer_split(plan_dir, workers, input_file, eval_data, limit, timeout, degraded_ok, redeploy, json_path,
                hedge_after, report_path, timeline_path, tls, token_file) -> None:  # fmt: skip
    """Run a split plan on its workers: deploy missing shards, fan out, fuse."""
    from edgekit.fleet.auth import ClientAuth
    from edgekit.splitter import SplitCoordinator, load_plan, parse_workers

    if bool(input_file) == bool(eval_data):
        raise InputError("give --input FILE.npy or --eval DATASET (one of them)")
    if (report_path or timeline_path) and not eval_data:
        raise InputError("--report and --timeline describe a run: give them with --eval")
    plan = load_plan(plan_dir)
    auth = ClientAuth.from_options(tls, token_file)
    if plan.strategy == "pipeline":
        from edgekit.cli.pipeline import run_pipeline

        result = run_pipeline(plan, parse_workers(workers), input_file, eval_data, limit, timeout, redeploy, auth)
        if json_path:
            Path(json_path).write_text(json.dumps(result, indent=2))
        return
    with SplitCoordinator(plan, parse_workers(workers), timeout, degraded_ok, auth, hedge_after=hedge_after) as c:
        sent = c.deploy(force=redeploy)
        if sent:
            outcome = c.last_deploy
            to = len({u.worker for u in outcome.uploads})
            session().err.print(f"deployed {', '.join(sent)} to {to} worker(s) in parallel in {outcome.seconds:.2f} s "
                                f"(deadline {outcome.deadline_s:.0f} s)")  # fmt: skip
        if input_file:
            result = _infer_file(c, plan, input_file)
        else:
            result = _evaluate(c, plan, eval_data, limit, report_path, timeline_path)
        down = dict(c.down)
    result["down"] = down
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))


def _infer_file(coordinator, plan, input_file: str) -> dict:
    from edgekit.inputs import read_one_array

    output = coordinator.infer(read_one_array(input_file))
    label = plan.class_names[int(output.prediction[0])]
    probs = softmax(output.logits[0])
    mark = " [yellow](degraded: without " + ", ".join(output.missing) + ")[/yellow]" if output.degraded else ""
    session().out.print(f"prediction: class {label} (p={probs.max():.3f}) in {output.latency_ms:.2f} ms{mark}")
    rows = [c.to_row() for c in output.calls]
    session().out.print(worker_table(rows, "per worker"))
    return {"prediction": label, "probabilities": probs.tolist(), "degraded": output.degraded,
            "missing": list(output.missing), "latency_ms": output.latency_ms, "workers": rows}  # fmt: skip


def _evaluate(coordinator, plan, eval_data: str, limit: int | None, report_path=None, timeline_path=None) -> dict:
    from edgekit.data import load_dataset

    split = load_dataset(eval_data, tuple(plan.input["shape"]))
    x, y = split.x_test, split.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    with session().err.status(f"evaluating on {len(x)} held-out samples", spinner="dots"):
        evaluation = coordinator.evaluate(x, y)
    rows = evaluation.per_worker()
    latency = sorted(evaluation.latency_ms)
    median = latency[len(latency) // 2]
    expected = plan.report.get("split", {}).get("accuracy")
    mark = f", [yellow]{evaluation.degraded_samples} degraded[/yellow]" if evaluation.degraded_samples else ""
    session().out.print(
        f"split accuracy on {eval_data}: {evaluation.accuracy:.2%} over {evaluation.samples} samples{mark} "
        f"(plan: fused {expected:.2%}, full model {plan.report['full']['accuracy']:.2%}); "
        f"end-to-end median {median:.2f} ms",
        soft_wrap=True,
    )
    session().out.print(worker_table(rows, "per worker (medians)"))
    report = evaluation.report
    measured = any(n.energy and n.energy.joules is not None for n in report.nodes)
    if report.retries or report.hedges or report.rejoins or measured:
        session().out.print(run_summary(report), soft_wrap=True)
        session().out.print(node_table(report))
    if report_path:
        Path(report_path).write_text(json.dumps(report.to_json(), indent=1))
    if timeline_path:
        from edgekit.splitter.timeline import plot_timeline

        plot_timeline(report.records, timeline_path, list(coordinator.addresses), f"{plan.model['name']} split run")
    return {"accuracy": evaluation.accuracy, "samples": evaluation.samples,
            "degraded_samples": evaluation.degraded_samples, "median_latency_ms": median, "workers": rows}  # fmt: skip


def worker_table(rows: list[dict], title: str):
    """Per worker: compute on the device, the round trip seen here, and what the network and serialisation cost
    (the difference), with the bytes each way."""
    columns = {"worker": "left", "shards": "left", "compute ms": "right", "rtt ms": "right", "overhead ms": "right",
               "bytes out": "right", "bytes in": "right"}  # fmt: skip
    table = render.table(title, columns, keep=("worker",))
    for r in rows:
        table.add_row(
            r["worker"], ",".join(r["shards"]), f"{r['compute_ms']:.3f}", f"{r['round_trip_ms']:.3f}",
            f"{r['overhead_ms']:.3f}", f"{r['bytes_sent']:.0f}", f"{r['bytes_received']:.0f}",
        )  # fmt: skip
    return table


COMMANDS = (split, worker, infer_split)
