"""``edgekit.export()``: resolve -> build -> fold -> lower -> manifest -> verify -> move into place.

Each stage fills one part of the Manifest. A bundle appears at its destination only once it has been
verified (or the caller allowed a mismatch); a rejected export is left beside it as ``<name>.rejected`` for
inspection, and a previous bundle at the destination is replaced only by a finished one.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgekit.bundle import MANIFEST_NAME, describe_files, write_manifest
from edgekit.calibration import DEFAULT_SAMPLES as DEFAULT_CALIBRATION_SAMPLES
from edgekit.calibration import load_calibration
from edgekit.errors import ConfigError, EdgekitError, UnsupportedOptionError, ValidationFailed
from edgekit.exporters.int8_recipes import choose_recipe
from edgekit.exporters.result import ExportResult
from edgekit.exporters.verify import DeviceCheck, ExportJob, verification_for, verify
from edgekit.formats import get_format
from edgekit.layouts import Extras
from edgekit.manifest import (
    DeviceVerification,
    ExportInfo,
    FoldSummary,
    Manifest,
    ModelInfo,
    QuantizationInfo,
)
from edgekit.models import ModelSpec, prepare_model
from edgekit.staging import StagedDirectory
from edgekit.targets import get_target, target_cpu
from edgekit.toolchain import edgekit_version, versions
from edgekit.transforms.reparam import NORM_TYPES, FoldReport, fold_norms
from edgekit.transforms.streaming import streaming_spec
from edgekit.types import PRECISIONS, ExportOptions, LoweredGraph, QualityGate, Tolerance, jsonable

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
    int8_recipe: str | None = None,
) -> ExportOptions:
    """Target preset first, then explicit --format / --delegate / precision on top of it. The CPU an INT8
    recipe is chosen for is the preset's device, else this machine; ``int8_recipe`` names one instead."""
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
    cpu = target_cpu(target)
    if int8_recipe is not None:
        if precision != "int8":
            raise UnsupportedOptionError(f"--int8-recipe with precision {precision}", int8_recipe, ["--int8 static"])
        choose_recipe(fmt.name, cpu, int8_recipe)  # an unknown or other format's name fails here, before any work
    return ExportOptions(
        format=fmt.name,
        target=target,
        delegate=delegate,
        precision=precision,
        allow_mismatch=allow_mismatch,
        validation_samples=samples,
        tolerance=tolerance or Tolerance(),
        quality=quality or QualityGate(),
        cpu=cpu,
        int8_recipe=int8_recipe,
    )


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
    verify_on: Sequence[DeviceCheck] = (),
    int8_recipe: str | None = None,
    token_merge: str | Sequence[int] | None = None,
) -> ExportResult:
    """Export ``model`` to a verified bundle directory and return its result.

    Raises ``ValidationFailed`` when the exported outputs disagree with PyTorch beyond tolerance,
    unless ``allow_mismatch`` is set. With ``fold`` (the default) every BatchNorm / RepBN is folded into
    its neighbours first; the comparison is always against the original, unfolded model.

    ``precision="int8"`` quantizes statically with ``calib`` (a .npy / .npz file or folder; default: the
    model's own dataset) and judges the bundle by ``quality`` (held-out accuracy or top-1 agreement)
    instead of the float tolerance; ``"int8-dynamic"`` quantizes weights only. The static recipe is the
    table's choice for the target's CPU (``exporters/int8_recipes.py``) unless ``int8_recipe`` names one.

    ``streaming=True`` exports the model's streaming form instead: one graph that takes ``chunk`` frames plus
    the whole state and returns the predictions so far plus the new state (layout in ``extras.stream``),
    verified by streaming sequences through the bundle against the whole-sequence PyTorch model.

    ``verify_on`` runs the same verification again on each device (a worker: the bundle deployed there, the
    same inputs, the same rule) and records every result in ``Manifest.verified_on``; a device that disagrees
    fails the export like the host would.
    ``token_merge`` (e.g. ``[0, 4, 8]``, or ``"0,4,8"``) exports one graph per token-merge rate (``r0``, ``r4``
    ...), each verified against the PyTorch model merging at that rate; with ``weights`` and a dataset, the
    manifest records each rate's held-out accuracy (``extras.token_merge``), and ``edgekit.load(...,
    budget_ms=...)`` picks the rate on the device.
    """
    options = resolve_options(target, format, delegate, allow_mismatch, samples, tolerance, precision, quality,
                              int8_recipe)  # fmt: skip
    notify = on_stage or (lambda _msg: None)
    notify("building the model")
    spec = prepare_model(model, weights, **(config or {}))
    if token_merge is not None:
        if streaming:
            raise UnsupportedOptionError("--token-merge with", "--streaming", ["a whole-input export"])
        from edgekit.models.token_merge_models import token_merge_spec

        notify("building one graph per token-merge rate")
        spec = token_merge_spec(spec, token_merge, evaluate=weights is not None)
    job = _job(spec, options, streaming, chunk, notify)
    if verify_on and not verification_for(job).on_device:
        raise UnsupportedOptionError("--verify-on for this export", verification_for(job).name,
                                     ["single-graph float or INT8 bundles"])  # fmt: skip
    if job.options.precision == "int8":
        notify("reading calibration data")
        calibration = load_calibration(job.spec.input_specs, calib, job.spec.dataset, calib_samples, options.seed)
        job = replace(job, options=replace(job.options, calibration=calibration))
    label = (options.target or options.format) + ("-stream" if streaming else "") + ("-tome" if token_merge else "")
    destination = Path(out_dir) if out_dir else Path(f"{job.spec.name}-{label}")
    start = time.perf_counter()
    with StagedDirectory(destination, MANIFEST_NAME, "an edgekit bundle") as stage:
        fmt = get_format(options.format)
        to_lower, fold_summary = _fold(job.spec, fold, notify)
        notify(f"lowering to {fmt.description}")
        lowered = fmt.exporter_class()().export(to_lower, stage.path, job.options)
        lowered = _count_flops(job.spec, _copy_assets(job.spec, lowered, stage.path))
        manifest = _manifest(job, lowered, fold_summary, stage.path, time.perf_counter() - start)
        write_manifest(stage.path, manifest)  # the runtime reads the staged bundle like any other
        notify(f"verifying with {fmt.runtime_class().name}")
        validation = verify(job, stage.path)
        manifest = manifest.with_validation(validation, time.perf_counter() - start)
        write_manifest(stage.path, manifest)
        failure = None if validation.passed else validation.summary()
        if failure is None and verify_on:
            manifest = _verify_on_devices(job, stage.path, manifest, verify_on, notify)
            write_manifest(stage.path, manifest)
            failure = next((f"on {d.device} ({d.machine or 'unknown CPU'}): {d.validation.summary()}"
                            for d in manifest.verified_on if not d.validation.passed), None)  # fmt: skip
        if failure is not None and not allow_mismatch:
            rejected = stage.commit_to(destination.with_name(destination.name + ".rejected"))
            hint = _QUANTIZED_HINT if options.quantized else ""
            raise ValidationFailed(options.format, failure, str(rejected), hint)
        stage.commit()
    log.info("wrote %s (%s)", destination, validation.summary())
    return ExportResult(str(destination), manifest, time.perf_counter() - start)


def _verify_on_devices(
    job: ExportJob, bundle_dir: Path, manifest: Manifest, devices: Sequence[DeviceCheck], notify: Callable
) -> Manifest:
    """The manifest with each device's verification recorded beside the host's."""
    records = []
    for device in devices:
        notify(f"verifying on {device.device} ({device.address})")
        result = verify(job, bundle_dir, device)
        records.append(DeviceVerification(device.device, device.address, device.machine, device.worker_version, result))
    return replace(manifest, verified_on=tuple(records))


def _job(spec: ModelSpec, options: ExportOptions, streaming: bool, chunk: int, notify: Callable) -> ExportJob:
    """What will be lowered and what it is verified against; options a model cannot take are refused here."""
    if spec.graphs and options.quantized:
        raise UnsupportedOptionError(f"precision for {spec.name} (several graphs)", options.precision, ["fp32"])
    if not streaming:
        return ExportJob(spec, spec, options)
    if options.quantized:
        raise UnsupportedOptionError("--streaming with precision", options.precision, ["fp32"])
    notify("making the streaming state explicit")
    stream_spec, layout = streaming_spec(spec, chunk)
    return ExportJob(stream_spec, spec, options, layout)


def _fold(spec: ModelSpec, fold: bool, notify: Callable) -> tuple[ModelSpec, FoldSummary]:
    """Every module that will be lowered (the model's forward, or each of its graphs) with its norms folded."""
    if not fold:
        return spec, FoldSummary(norms_left=_norms_left(spec), skipped="disabled (--no-fold)")
    notify("folding BatchNorm into neighbouring layers")
    units = spec.graphs or (spec,)
    results = [fold_norms(u.module) for u in units]
    folded = tuple(replace(u, module=m) for u, (m, _) in zip(units, results, strict=True))
    to_lower = replace(spec, graphs=folded) if spec.graphs else folded[0]
    report = FoldReport.merge([r for _, r in results])
    return to_lower, FoldSummary(dict(report.folded), report.traced, report.reason, _norms_left(to_lower))


def _norms_left(spec: ModelSpec) -> int:
    return sum(isinstance(m, NORM_TYPES) for u in (spec.graphs or (spec,)) for m in u.module.modules())


def _copy_assets(spec: ModelSpec, lowered: LoweredGraph, staging: Path) -> LoweredGraph:
    """Copy the spec's assets (a tokenizer file ...) into the bundle; they are hashed with the graphs' files."""
    for name, source in spec.assets.items():
        if name in lowered.files or Path(name).name != name:
            raise ConfigError(f"asset {name!r} of {spec.name} would overwrite a graph file or leave the bundle")
        shutil.copyfile(source, staging / name)
    return replace(lowered, files=(*lowered.files, *spec.assets)) if spec.assets else lowered


def _count_flops(spec: ModelSpec, lowered: LoweredGraph) -> LoweredGraph:
    """Each graph's own FLOPs: an energy estimate charges a decoder step for a step, not for the whole model."""
    units = {g.name: g for g in spec.graphs} if spec.graphs else {lowered.graphs[0].name: spec}
    graphs = tuple(replace(g, flops=units[g.name].flops()) if g.name in units else g for g in lowered.graphs)
    return replace(lowered, graphs=graphs)


def _manifest(job: ExportJob, lowered: LoweredGraph, fold: FoldSummary, bundle_dir: Path, seconds: float) -> Manifest:
    spec, options = job.spec, job.options
    quantization = None
    if lowered.quantization is not None:
        calibration = options.calibration if lowered.quantization.calibrated else None
        quantization = QuantizationInfo(options.precision, lowered.quantization,
                                        calibration.source if calibration else None,
                                        len(calibration) if calibration else None)  # fmt: skip
    extras = Extras.from_json(jsonable(spec.extras))
    if job.layout is not None:
        extras = replace(extras, stream=job.layout)
    flops = lowered.graphs[0].flops if not spec.graphs else spec.flops()
    return Manifest(
        model=ModelInfo(
            spec.name,
            spec.family,
            spec.parameters,
            flops,
            spec.task,
            jsonable(spec.config),
            tuple(spec.class_names) if spec.class_names else None,
            spec.dataset,
        ),  # fmt: skip
        format=options.format,
        precision=options.precision,
        graphs=lowered.graphs,
        files=describe_files(bundle_dir, list(lowered.files)),
        export=ExportInfo(seconds, lowered.undelegated_ops),
        target=options.target,
        delegate=options.delegate,
        transforms=fold,
        quantization=quantization,
        extras=extras,
        toolchain={k: v for k, v in versions().items() if v is not None},
        edgekit_version=edgekit_version(),
    )


_QUANTIZED_HINT = (
    "Calibrate on more representative data (--calib, --calib-samples), try --int8 dynamic, or accept a larger "
    "loss with --max-accuracy-drop. "
)


def try_export(model: str, fmt: str, out_root: str | Path, **kwargs: Any) -> tuple[ExportResult | None, str, str]:
    """(result, status, detail) for benchmarks: status is ok / verification failed / export failed."""
    try:
        return export(model, format=fmt, out_dir=Path(out_root) / f"{model}-{fmt}", **kwargs), "ok", ""
    except ValidationFailed as exc:
        return None, "verification failed", str(exc)
    except EdgekitError as exc:
        return None, "export failed", str(exc)
