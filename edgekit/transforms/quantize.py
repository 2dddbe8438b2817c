"""PT2E post-training quantization, shared by the exporters whose toolchains take a PT2E-quantized graph.

The model is captured with ``torch.export``, the format's quantizer annotates it (which ops, which
observers), calibration samples run through the observers, and ``convert_pt2e`` turns the observed
ranges into quantize / dequantize pairs that the format's lowering fuses into INT8 kernels.
"""

from __future__ import annotations

import logging

import torch

from edgekit.models.spec import ModelSpec
from edgekit.types import Calibration, QuantizationScheme

log = logging.getLogger(__name__)

# Settings of the PT2E symmetric quantization configs (XNNPACK's and litert-torch's take the same keywords):
# INT8 weights per output channel; activations per tensor, calibrated (static) or measured at run time.
PT2E_SETTINGS = {
    "int8": {"is_per_channel": True},
    "int8-dynamic": {"is_per_channel": True, "is_dynamic": True},
}


def pt2e_quantize(
    spec: ModelSpec, quantizer, calibration: Calibration | None, fold_quantize: bool = True
) -> torch.fx.GraphModule:
    """The spec's module quantized by ``quantizer``; dynamic quantizers need no calibration (pass None)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = torch.export.export(spec.module, spec.example_inputs).module()
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        if calibration is None:
            prepared(*spec.example_inputs)  # dynamic: weight observers only, one pass sets them
        else:
            for sample in calibration.samples:
                prepared(*(torch.from_numpy(sample[name]) for name in spec.input_names))
    log.info("calibrated on %d samples", len(calibration) if calibration else 0)
    return convert_pt2e(prepared, fold_quantize=fold_quantize)


def pt2e_scheme(tool: str, settings: dict) -> QuantizationScheme:
    """In words, for the manifest: the scheme a PT2E symmetric-quantization setting produces."""
    return QuantizationScheme(
        tool=tool,
        weights="int8 symmetric, per output channel" if settings.get("is_per_channel") else "int8 per tensor",
        activations="int8 per tensor, quantized at run time"
        if settings.get("is_dynamic")
        else "int8 per tensor (asymmetric), ranges from calibration",
    )
