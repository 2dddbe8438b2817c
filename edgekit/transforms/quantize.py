"""PT2E post-training quantization, shared by the exporters whose toolchains take a PT2E-quantized graph.

The model is captured with ``torch.export``, the format's quantizer annotates it (which ops, which
observers), calibration samples run through the observers, and ``convert_pt2e`` turns the observed
ranges into quantize / dequantize pairs that the format's lowering fuses into INT8 kernels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Pt2eRecipe:
    """Settings of a PT2E quantizer (XNNPACK's or litert-torch's: both take module-type configs).

    ``quantize_modules`` None: the quantizer's global config, every op it can annotate (linear, conv, add,
    mul, cat ...). Otherwise only the ops traced inside modules whose class has one of these names
    (``Linear``, ``Conv2d``: the layers with weights) are quantized, and everything between them stays float.
    ``float_modules``: module classes (by name) whose ops stay float even under the global config.
    """

    per_channel: bool = True
    quantize_modules: tuple[str, ...] | None = None
    float_modules: tuple[str, ...] = ()
    # aten operators (``conv2d``) quantized by operator type, outside ``quantize_modules``: XNNPACK's conv
    # patterns hold the weight and the following ReLU, which no module-type filter matches, so a Conv2d
    # module config left every convolution float (cnn_small's "int8" .pte was 1.00x the FP32 size)
    quantize_operators: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"per_channel": self.per_channel, "float_modules": list(self.float_modules),
                "quantize_modules": None if self.quantize_modules is None else list(self.quantize_modules),
                "quantize_operators": list(self.quantize_operators)}  # fmt: skip


def configure_quantizer(quantizer, config, recipe: Pt2eRecipe, module: torch.nn.Module, type_key=None):
    """``quantizer`` set up for ``recipe`` with ``config``; module classes are found in ``module`` by name
    (several may share one, edgekit's LayerNorm and torch's: each is meant). ``type_key`` turns a class into
    what the quantizer's module-type filter compares with the graph's ``nn_module_stack`` (litert-torch 0.x
    compares the class itself with the strings torch.export records, so it is given the string)."""
    key = type_key or (lambda t: t)

    def classes(names) -> list:
        return list(dict.fromkeys(key(type(m)) for m in module.modules() if type(m).__name__ in names))

    if recipe.quantize_modules is None:
        quantizer.set_global(config)
        for module_type in classes(recipe.float_modules):
            quantizer.set_module_type(module_type, None)
        return quantizer
    for module_type in classes(set(recipe.quantize_modules) - set(recipe.float_modules)):
        quantizer.set_module_type(module_type, config)
    for operator in recipe.quantize_operators:
        quantizer.set_operator_type(getattr(torch.ops.aten, operator).default, config)
    return quantizer


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


def pt2e_scheme(tool: str, settings: dict, recipe=None, cpu=None) -> QuantizationScheme:
    """In words, for the manifest: the scheme a PT2E symmetric-quantization setting produces (``recipe``: the
    Int8Recipe of a static export, with the CPU it was chosen for)."""
    layers = recipe.settings.quantize_modules if recipe else None
    return QuantizationScheme(
        tool=tool,
        weights="int8 symmetric, per output channel" if settings.get("is_per_channel") else "int8 per tensor",
        activations=(
            "int8 per tensor, quantized at run time"
            if settings.get("is_dynamic")
            else "int8 per tensor (asymmetric), ranges from calibration"
        )
        + (f", at {' / '.join(layers)} layers only" if layers else ""),
        details={"settings": recipe.settings.to_json()} if recipe else {},
        recipe=recipe.name if recipe else None,
        cpu=cpu if recipe else None,
    )


def qualified_name(cls: type) -> str:
    """A class as torch.export's ``nn_module_stack`` names it."""
    return f"{cls.__module__}.{cls.__qualname__}"
