"""How an export is verified, as a table: the first row that applies to the job runs.

Every row runs the written bundle with its real runtime and the PyTorch model on the same inputs; only what
"agrees" means differs: float tolerance per output, the INT8 quality gate (accuracy, or agreement without
labels), every graph of a multi-graph bundle, or a stream pushed frame by frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from edgekit import runtimes
from edgekit.exporters.verify_stream import validate_stream
from edgekit.inputs import make_inputs
from edgekit.layouts import StreamLayout
from edgekit.manifest import Validation
from edgekit.models.spec import ModelSpec, SubGraph, run_module
from edgekit.types import ExportOptions
from edgekit.validate import compare, judge_quantized, merge_results


@dataclass(frozen=True)
class ExportJob:
    """One export as the verifiers see it: what was lowered, what it is compared with, and the options."""

    spec: ModelSpec  # the lowered model (for --streaming: its streaming form)
    whole: ModelSpec  # the model as built (the whole-sequence reference of a stream)
    options: ExportOptions
    layout: StreamLayout | None = None


class DeviceCheck(Protocol):
    """A Candidate that runs on a device (``edgekit.splitter.remote_verify.DeviceRunner``): after a call it
    knows which machine answered."""

    device: str
    address: str
    machine: str
    worker_version: str

    def __call__(self, bundle_dir: Path, input_sets: list[dict], graph: str | None = None) -> list[dict]: ...


@dataclass(frozen=True)
class Verification:
    name: str
    applies: Callable[[ExportJob], bool]
    run: Callable[[ExportJob, Path, Candidate], Validation]
    on_device: bool = True  # whether a worker can run it (--verify-on): one graph, one call per input set


# How the bundle's outputs are obtained: its runtime here, or a worker on the device (``--verify-on``).
Candidate = Callable[[Path, list[dict], "str | None"], list[dict]]


def run_here(bundle_dir: Path, input_sets: list[dict], graph: str | None = None) -> list[dict]:
    with runtimes.load(bundle_dir, graph=graph) as runtime:
        return [runtime.run(sample) for sample in input_sets]


def run_both(
    io: ModelSpec | SubGraph,
    bundle_dir: Path,
    input_sets: list[dict],
    graph: str | None = None,
    candidate: Candidate = run_here,
) -> tuple[list[dict], list[dict]]:
    """Named outputs of the PyTorch model (or one of its graphs) and of the bundle, per input set."""
    reference = []
    for sample in input_sets:
        outputs = run_module(io.module, tuple(torch.from_numpy(sample[n]) for n in io.input_names))
        reference.append({n: o.numpy() for n, o in zip(io.output_names, outputs, strict=False)})
    return reference, candidate(bundle_dir, input_sets, graph)


def input_sets(io: ModelSpec | SubGraph, options: ExportOptions) -> list[dict]:
    """The example inputs, then the graph's own realistic ones (integer positions across a KV cache, binary
    masks, caches written by real steps) or random ones: ``options.validation_samples`` sets in all."""
    example = {n: t.numpy() for n, t in zip(io.input_names, io.example_inputs, strict=True)}
    count = options.validation_samples - 1
    if getattr(io, "sample_inputs", None) is not None:
        return [example, *io.sample_inputs(count, options.seed)]
    return [example, *make_inputs(io.input_specs, count, seed=options.seed)]


def _verify_float(job: ExportJob, bundle_dir: Path, run: Candidate = run_here) -> Validation:
    reference, candidate = run_both(job.spec, bundle_dir, input_sets(job.spec, job.options), candidate=run)
    return compare(reference, candidate, job.options.tolerance, classify=job.spec.task == "classification")


def _verify_graphs(job: ExportJob, bundle_dir: Path, run: Candidate = run_here) -> Validation:
    """Each graph of a multi-graph bundle against its PyTorch module."""
    results = []
    for g in job.spec.graphs:
        reference, candidate = run_both(g, bundle_dir, input_sets(g, job.options), graph=g.name, candidate=run)
        results.append((g.name, compare(reference, candidate, job.options.tolerance, classify=False)))
    return merge_results(results)


# Without labelled data a quantized bundle is compared on this many random inputs at least: top-1 agreement
# over eight inputs would move in steps of 12.5%.
_MIN_UNLABELLED_SAMPLES = 64


def _verify_quantized(job: ExportJob, bundle_dir: Path, run: Candidate = run_here) -> Validation:
    """The quantized bundle against the float PyTorch model on the held-out split of the model's dataset
    (labels: accuracy decides) or, without one, on random inputs (top-1 agreement or cosine decides)."""
    spec, options = job.spec, job.options
    classify = spec.task == "classification"
    labels = None
    if spec.dataset and classify and len(spec.input_specs) == 1:
        from edgekit.data import load_dataset

        input_spec = spec.input_specs[0]
        batches, labels = load_dataset(spec.dataset, input_spec.shape).test_batches(input_spec.shape[0])
        sets = [{input_spec.name: x} for x in batches]
        data = f"{spec.dataset} held-out"
    else:
        sets = make_inputs(
            spec.input_specs, max(options.validation_samples, _MIN_UNLABELLED_SAMPLES), seed=options.seed
        )
        data = "random normal"
    reference, candidate = run_both(spec, bundle_dir, sets, candidate=run)
    return judge_quantized(reference, candidate, options.quality, options.precision, data, labels, classify)


VERIFICATIONS: tuple[Verification, ...] = (
    Verification("stream", lambda job: job.layout is not None,
                 lambda job, path, _run: validate_stream(job.whole, path, job.options), on_device=False),
    Verification("graphs", lambda job: bool(job.spec.graphs), _verify_graphs, on_device=False),
    Verification("quantized", lambda job: job.options.quantized, _verify_quantized),
    Verification("float", lambda job: True, _verify_float),
)  # fmt: skip


def verification_for(job: ExportJob) -> Verification:
    return next(v for v in VERIFICATIONS if v.applies(job))


def verify(job: ExportJob, bundle_dir: Path, run: Candidate = run_here) -> Validation:
    """The job's verification with the bundle run here, or by ``run`` (a worker on the device)."""
    return verification_for(job).run(job, bundle_dir, run)
