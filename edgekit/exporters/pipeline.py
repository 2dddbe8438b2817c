"""``edgekit.export()``: resolve -> lower -> write bundle -> load back -> compare with PyTorch -> manifest.

A bundle appears at its destination only once it has been verified (or the caller allowed a
mismatch); a rejected export is left beside it as ``<name>.rejected`` for inspection, and a
previous bundle at the destination is replaced only by a finished one.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from edgekit import runtimes
from edgekit.bundle import MANIFEST_NAME, SCHEMA_VERSION, check_replaceable, describe_files, write_manifest
from edgekit.calibration import DEFAULT_SAMPLES as DEFAULT_CALIBRATION_SAMPLES
from edgekit.calibration import load_calibration
from edgekit.errors import ConfigError, EdgekitError, UnsupportedOptionError, ValidationFailed
from edgekit.exporters.verify_stream import validate_stream
from edgekit.formats import get_format
from edgekit.models import ModelSpec, resolve_model
from edgekit.models.hf_folder import is_checkpoint_folder, load_checkpoint_folder
from edgekit.models.spec import SubGraph, run_module
from edgekit.targets import get_target
from edgekit.toolchain import edgekit_version, versions
from edgekit.training import load_state, read_weights
from edgekit.transforms.reparam import NORM_TYPES, FoldReport, fold_norms
from edgekit.transforms.streaming import streaming_spec
from edgekit.types import PRECISIONS, ExportOptions, ExportResult, LoweredGraph, QualityGate, Tolerance, jsonable
from edgekit.validate import compare, judge_quantized, make_inputs, merge_results

log = logging.getLogger(__name__)

DEFAULT_FORMAT = "pte"


def resolve_options(
    target: str | None = None,
    format: str | None = None,
    delegate: str | None = None,
    allow_mismatch: bool = False,
    samples: int = 8,
    tolerance: Tolerance | None = None,
    precision: str | None = None,
    quality: QualityGate | None = None,
) -> ExportOptions:
    """Target preset first, then explicit --format / --delegate / precision on top of it."""
    preset = get_target(target) if target else None
    fmt_name = format or (preset.format if preset else DEFAULT_FORMAT)
    fmt = get_format(fmt_name)
    if delegate is None:
        delegate = preset.delegate if preset and preset.format == fmt.name else fmt.delegates[0]
    if delegate not in fmt.delegates:
        allowed = [d for d in fmt.delegates if d] or ["(none: this format has no delegate option)"]
        raise UnsupportedOptionError(f"--delegate for {fmt.name}", delegate, allowed)
    if samples < 1:
        raise UnsupportedOptionError("--samples", samples, ["an integer >= 1"])
    precision = precision or (preset.precision if preset else "fp32")
    if precision not in PRECISIONS:
        raise UnsupportedOptionError("precision", precision, PRECISIONS)
    return ExportOptions(
        format=fmt.name,
        target=target,
        delegate=delegate,
        precision=precision,
        allow_mismatch=allow_mismatch,
        validation_samples=samples,
        tolerance=tolerance or Tolerance(),
        quality=quality or QualityGate(),
    )


def prepare_model(model: str | ModelSpec, weights: str | Path | None = None, **config: Any) -> ModelSpec:
    """Build the model and load weights; a weights file's recorded config is the starting config.

    ``weights`` may also be a Hugging Face checkpoint folder (config.json + safetensors): its config builds
    the model of its ``model_type``, as when the folder itself is given as ``model``.
    """
    if weights is not None and is_checkpoint_folder(weights):
        spec = load_checkpoint_folder(weights, **config)
        if isinstance(model, str) and model != spec.name:
            log.warning("%s is a %s checkpoint; building %s, not %s", weights, spec.name, spec.name, model)
        return spec
    if weights is None:
        return resolve_model(model, **config)
    state, meta = read_weights(weights)
    if meta.get("model") and isinstance(model, str) and meta["model"] != model:
        log.warning("weights %s were saved for %s, loading them into %s", weights, meta["model"], model)
    spec = resolve_model(model, **{**meta.get("config", {}), **config})
    load_state(spec, state, str(weights))
    trained_on = meta.get("extra", {}).get("dataset")
    if spec.dataset is None and trained_on:
        # weights trained on a built-in dataset make it the model's own (calibration, INT8 accuracy)
        spec = replace(spec, dataset=trained_on)
    return spec


def export(
    model: str | ModelSpec,
    *,
    target: str | None = None,
    format: str | None = None,
    delegate: str | None = None,
    out_dir: str | Path | None = None,
    weights: str | Path | None = None,
    config: dict[str, Any] | None = None,
    allow_mismatch: bool = False,
    samples: int = 8,
    tolerance: Tolerance | None = None,
    fold: bool = True,
    on_stage: Callable[[str], None] | None = None,
    precision: str | None = None,
    calib: str | Path | None = None,
    calib_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    quality: QualityGate | None = None,
    streaming: bool = False,
    chunk: int = 1,
) -> ExportResult:
    """Export ``model`` to a verified bundle directory and return its result.

    Raises ``ValidationFailed`` when the exported outputs disagree with PyTorch beyond tolerance,
    unless ``allow_mismatch`` is set. With ``fold`` (the default) every BatchNorm / RepBN is folded into
    its neighbours first; the comparison is always against the original, unfolded model.

    ``precision="int8"`` quantizes statically with ``calib`` (a .npy / .npz file or folder; default: the
    model's own dataset) and judges the bundle by ``quality`` (held-out accuracy or top-1 agreement)
    instead of the float tolerance; ``"int8-dynamic"`` quantizes weights only.

    ``streaming=True`` exports the model's streaming form instead: one graph that takes ``chunk`` frames plus
    the whole state and returns the predictions so far plus the new state (layout in ``extras.stream``),
    verified by streaming sequences through the bundle against the whole-sequence PyTorch model.
    """
    options = resolve_options(target, format, delegate, allow_mismatch, samples, tolerance, precision, quality)
    notify = on_stage or (lambda _msg: None)
    notify("building the model")
    spec = prepare_model(model, weights, **(config or {}))
    whole, layout = spec, None
    if spec.graphs and options.quantized:
        raise UnsupportedOptionError(f"precision for {spec.name} (several graphs)", options.precision, ["fp32"])
    if streaming:
        if options.quantized:
            raise UnsupportedOptionError("--streaming with precision", options.precision, ["fp32"])
        notify("making the streaming state explicit")
        spec, layout = streaming_spec(spec, chunk)
    if options.precision == "int8":
        notify("reading calibration data")
        calibration = load_calibration(spec.input_specs, calib, spec.dataset, calib_samples, options.seed)
        options = replace(options, calibration=calibration)
    label = (options.target or options.format) + ("-stream" if streaming else "")
    destination = Path(out_dir) if out_dir else Path(f"{spec.name}-{label}")
    check_replaceable(destination, MANIFEST_NAME, "an edgekit bundle")
    staging = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    start = time.perf_counter()
    try:
        fmt = get_format(options.format)
        to_lower, fold_report = spec, None
        if fold:  # every module that will be lowered: the model's forward, or each of its graphs
            notify("folding BatchNorm into neighbouring layers")
            units = spec.graphs or (spec,)
            results = [fold_norms(u.module) for u in units]
            folded = tuple(replace(u, module=m) for u, (m, _) in zip(units, results, strict=True))
            to_lower = replace(spec, graphs=folded) if spec.graphs else folded[0]
            fold_report = FoldReport.merge([report for _, report in results])
        notify(f"lowering to {fmt.description}")
        lowered = fmt.exporter_class()().export(to_lower, staging, options)
        lowered = _copy_assets(spec, lowered, staging)
        manifest = _manifest(spec, options, lowered, staging, time.perf_counter() - start)
        manifest["transforms"] = {
            "fold_norms": fold_report.to_json() if fold_report else {"skipped": "disabled (--no-fold)"},
            "norms_left": sum(
                isinstance(m, NORM_TYPES) for u in (to_lower.graphs or (to_lower,)) for m in u.module.modules()
            ),
        }
        if lowered.quantization is not None:
            calibration = options.calibration.to_json() if options.calibration else None
            manifest["quantization"] = {"precision": options.precision, **lowered.quantization,
                                        "calibration": calibration}  # fmt: skip
        manifest["extras"].update(jsonable(spec.extras))
        if layout is not None:
            manifest["extras"]["stream"] = layout.to_json()
        write_manifest(staging, manifest)
        notify(f"verifying with {fmt.runtime_class().name}")
        if layout is not None:
            validation = validate_stream(whole, staging, options)
        elif spec.graphs:
            validation = _validate_graphs(spec, staging, options)
        else:
            check = _validate_quantized if options.quantized else _validate
            validation = check(spec, staging, options)
        manifest["validation"] = validation.to_json()
        manifest["export"]["seconds"] = round(time.perf_counter() - start, 3)
        write_manifest(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not validation.passed and not allow_mismatch:
        rejected = destination.with_name(destination.name + ".rejected")
        shutil.rmtree(rejected, ignore_errors=True)
        staging.rename(rejected)
        hint = _QUANTIZED_HINT if options.quantized else ""
        raise ValidationFailed(options.format, validation.summary(), str(rejected), hint)
    if destination.exists():
        shutil.rmtree(destination)
    staging.rename(destination)
    log.info("wrote %s (%s)", destination, validation.summary())
    return ExportResult(str(destination), manifest, validation, time.perf_counter() - start)


def _copy_assets(spec: ModelSpec, lowered: LoweredGraph, staging: Path) -> LoweredGraph:
    """Copy the spec's assets (a tokenizer file ...) into the bundle; they are hashed with the graphs' files."""
    for name, source in spec.assets.items():
        if name in lowered.files or Path(name).name != name:
            raise ConfigError(f"asset {name!r} of {spec.name} would overwrite a graph file or leave the bundle")
        shutil.copyfile(source, staging / name)
    return replace(lowered, files=(*lowered.files, *spec.assets)) if spec.assets else lowered


def _manifest(
    spec: ModelSpec, options: ExportOptions, lowered: LoweredGraph, bundle_dir: Path, seconds: float
) -> dict[str, Any]:
    undelegated = lowered.undelegated_ops
    return {
        "schema_version": SCHEMA_VERSION,
        "edgekit_version": edgekit_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": spec.name,
            "family": spec.family,
            "parameters": spec.parameters,
            "flops": spec.flops(),
            "task": spec.task,
            "config": jsonable(spec.config),
            "class_names": list(spec.class_names) if spec.class_names else None,
            "dataset": spec.dataset,
        },
        "format": options.format,
        "target": options.target,
        "delegate": options.delegate,
        "precision": options.precision,
        "graphs": [g.to_json() for g in lowered.graphs],
        "files": describe_files(bundle_dir, list(lowered.files)),
        "validation": {"passed": False, "pending": True},
        "export": {
            "seconds": round(seconds, 3),
            "undelegated_ops": undelegated,
            "undelegated_op_count": sum(undelegated.values()) if undelegated is not None else None,
        },
        "toolchain": {k: v for k, v in versions().items() if v is not None},
        "extras": {},
    }


def _validate(spec: ModelSpec, bundle_dir: Path, options: ExportOptions):
    """Run the written bundle with its runtime and PyTorch on the same inputs and compare."""
    input_sets = _input_sets(spec, options)
    reference, candidate = _run_both(spec, bundle_dir, input_sets)
    return compare(reference, candidate, options.tolerance, classify=spec.task == "classification")


def _run_both(
    spec: ModelSpec | SubGraph, bundle_dir: Path, input_sets: list[dict], graph: str | None = None
) -> tuple[list[dict], list[dict]]:
    """Named outputs of the PyTorch model (or one of its graphs) and of the bundle's runtime, per input set."""
    reference = []
    for sample in input_sets:
        outputs = run_module(spec.module, tuple(torch.from_numpy(sample[n]) for n in spec.input_names))
        reference.append({n: o.numpy() for n, o in zip(spec.output_names, outputs, strict=False)})
    with runtimes.load(bundle_dir, graph=graph) as runtime:
        candidate = [runtime.run(sample) for sample in input_sets]
    return reference, candidate


def _input_sets(io: ModelSpec | SubGraph, options: ExportOptions) -> list[dict]:
    """The example inputs, then the graph's own realistic ones or random ones: ``options.validation_samples``
    sets in all."""
    example = {n: t.numpy() for n, t in zip(io.input_names, io.example_inputs, strict=True)}
    count = options.validation_samples - 1
    if getattr(io, "sample_inputs", None) is not None:
        return [example, *io.sample_inputs(count, options.seed)]
    return [example, *make_inputs(io.input_specs, count, seed=options.seed)]


def _validate_graphs(spec: ModelSpec, bundle_dir: Path, options: ExportOptions):
    """Each graph of a multi-graph bundle against its PyTorch module, on its example and random inputs."""
    results = []
    for g in spec.graphs:
        reference, candidate = _run_both(g, bundle_dir, _input_sets(g, options), graph=g.name)
        results.append((g.name, compare(reference, candidate, options.tolerance, classify=False)))
    return merge_results(results)


_QUANTIZED_HINT = (
    "Calibrate on more representative data (--calib, --calib-samples), try --int8 dynamic, or accept a larger "
    "loss with --max-accuracy-drop. "
)
# Without labelled data a quantized bundle is compared on this many random inputs at least: top-1 agreement
# over eight inputs would move in steps of 12.5%.
_MIN_UNLABELLED_SAMPLES = 64


def _validate_quantized(spec: ModelSpec, bundle_dir: Path, options: ExportOptions):
    """Run the quantized bundle and the float PyTorch model on the held-out split of the model's dataset
    (labels: accuracy decides) or, without one, on random inputs (top-1 agreement or cosine decides)."""
    classify = spec.task == "classification"
    labels = None
    if spec.dataset and classify and len(spec.input_specs) == 1:
        from edgekit.data import load_dataset

        input_spec = spec.input_specs[0]
        batches, labels = load_dataset(spec.dataset, input_spec.shape).test_batches(input_spec.shape[0])
        input_sets = [{input_spec.name: x} for x in batches]
        data = f"{spec.dataset} held-out"
    else:
        count = max(options.validation_samples, _MIN_UNLABELLED_SAMPLES)
        input_sets = make_inputs(spec.input_specs, count, seed=options.seed)
        data = "random normal"
    reference, candidate = _run_both(spec, bundle_dir, input_sets)
    return judge_quantized(reference, candidate, options.quality, options.precision, data, labels, classify)


def try_export(model: str, fmt: str, out_root: str | Path, **kwargs: Any) -> tuple[ExportResult | None, str, str]:
    """(result, status, detail) for benchmarks: status is ok / verification failed / export failed."""
    try:
        return export(model, format=fmt, out_dir=Path(out_root) / f"{model}-{fmt}", **kwargs), "ok", ""
    except ValidationFailed as exc:
        return None, "verification failed", str(exc)
    except EdgekitError as exc:
        return None, "export failed", str(exc)
