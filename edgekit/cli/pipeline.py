"""Rendering of layer-pipeline plans (``edgekit split --strategy pipeline``) and running them (``infer-split``).

Rendering only -- the work is in ``edgekit.splitter.pipeline_run``.
"""

from __future__ import annotations

import time

from edgekit.cli import render
from edgekit.cli.app import session
from edgekit.validate import softmax


def render_pipeline_plan(plan) -> None:
    report = plan.report
    pipe, full = report["pipeline"], report["full"]
    title = f"{plan.model['name']} as a {len(plan.shards)}-stage pipeline over {len(plan.devices)} devices"
    columns = {"stage": "left", "device": "left", "blocks": "left", "params": "right", "est ms": "right",
               "link ms": "right"}  # fmt: skip
    table = render.table(title, columns, keep=("stage", "blocks", "est ms"))
    for shard, stage in zip(plan.shards, pipe["stages"], strict=True):
        start, stop = stage["blocks"]
        table.add_row(
            shard.name, f"{render.text(shard.device)} ({shard.format})", f"{start}-{stop - 1}",
            render.count(shard.parameters), f"{stage['compute_ms']:.3f}", f"{stage['in_ms'] + stage['out_ms']:.3f}",
        )  # fmt: skip
    session().out.print(table)
    session().out.print(
        f"held-out accuracy: full {full['accuracy']:.2%}, stages chained {pipe['accuracy']:.2%}; estimated "
        f"{pipe['latency_ms']:.3f} ms a request, {pipe['throughput_per_s']:.0f}/s on a stream (busiest stage "
        f"{pipe['period_ms']:.3f} ms) -> {plan.root}",
        soft_wrap=True,
    )


def run_pipeline(plan, workers, input_file, eval_data, limit, timeout, redeploy, auth) -> dict:
    from edgekit.splitter.pipeline_run import PipelineRunner

    with PipelineRunner(plan, workers, timeout, auth) as runner:
        start = time.perf_counter()
        sent = runner.deploy(force=redeploy)
        if sent:
            session().err.print(f"deployed {', '.join(sent)} in {time.perf_counter() - start:.2f} s")
        if input_file:
            return _infer_file(runner, plan, input_file)
        return _evaluate(runner, plan, eval_data, limit)


def _infer_file(runner, plan, input_file: str) -> dict:
    from edgekit.inputs import read_one_array

    output = runner.infer(read_one_array(input_file))
    label = plan.class_names[int(output.prediction[0])]
    probs = softmax(output.logits[0])
    stages = ", ".join(f"{s.shard}@{render.text(s.worker)} {s.compute_ms:.2f} ms" for s in output.stages)
    session().out.print(f"prediction: class {label} (p={probs.max():.3f}) in {output.latency_ms:.2f} ms ({stages})")
    return {"prediction": label, "probabilities": probs.tolist(), "latency_ms": output.latency_ms,
            "stages": [s.__dict__ for s in output.stages], "bytes": output.bytes_total}  # fmt: skip


def _evaluate(runner, plan, eval_data: str, limit: int | None) -> dict:
    from edgekit.data import load_dataset

    split = load_dataset(eval_data, tuple(plan.input["shape"]))
    x, y = split.x_test, split.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    with session().err.status(f"evaluating on {len(x)} held-out samples", spinner="dots"):
        accuracy, stream = runner.evaluate(x, y, in_flight=len(plan.shards))
    session().out.print(
        f"pipeline accuracy on {eval_data}: {accuracy:.2%} over {len(x)} samples (full model "
        f"{plan.report['full']['accuracy']:.2%}); {stream.throughput_per_s:.1f}/s with {stream.in_flight} in flight, "
        f"median {stream.latency_ms:.2f} ms a request",
        soft_wrap=True,
    )
    return {"accuracy": accuracy, "samples": len(x), "throughput_per_s": stream.throughput_per_s,
            "median_latency_ms": stream.latency_ms}  # fmt: skip
