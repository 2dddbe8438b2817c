"""Static INT8 recipes per format and CPU: the table, how one is chosen, and ``--int8-recipe`` overrides.

A recipe is chosen for the CPU the bundle will run on (the target preset's device, else this machine; see
``edgekit.cpu``) by its ISA class. The numbers behind each choice are in ``benchmarks/int8.py`` and the README.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgekit.cpu import CpuFeatures, host_cpu
from edgekit.errors import UnsupportedOptionError
from edgekit.registry import Registry
from edgekit.transforms.quantize import PT2E_SETTINGS, Pt2eRecipe
from edgekit.types import ExportOptions


@dataclass(frozen=True)
class OrtQuantRecipe:
    """How ONNX Runtime's static QDQ quantizer is driven (``benchmarks/int8_onnx.py`` compares recipes).

    ONNX Runtime's own defaults lost accuracy on ViTs for two reasons, which the table's recipes address.
    (1) On x86 CPUs without VNNI (measured on a Zen 3) its int8 kernels multiply with VPMADDUBSW, whose int16 pair
    sums saturate when weights use the full int8 range: 7-bit weights (``reduce_range``) took a trained
    vit_digits from logit cosine 0.981 to 0.9995 (per-tensor weights, which rarely reach the range per
    channel, 0.996). (2) It quantizes every tensor between layers too (residual adds, softmax, layer norm,
    reshapes): on an untrained ViT whose logits differ by hundredths that took top-1 agreement to 8%;
    quantizing only the layers with weights, as the PT2E quantizers of the other formats do, gave 100%.
    Calibration method (MinMax / Percentile / Entropy) and symmetric activations moved little.
    """

    calibrate_method: str = "MinMax"  # MinMax, Percentile or Entropy
    activation_symmetric: bool = False
    # op types left in float
    exclude_op_types: tuple[str, ...] = ()
    # quantize only these op types (None: every op type ONNX Runtime can quantize, Add and Softmax included)
    op_types: tuple[str, ...] | None = None
    per_channel: bool = True
    # 7-bit weights, against the int16 saturation of x86 int8 kernels without VNNI
    reduce_range: bool = False
    # QInt8 or QUInt8 activations (x86's VPDPBUSD / VPMADDUBSW multiply unsigned by signed bytes)
    activation_type: str = "QInt8"
    # quantize only MatMuls whose second input is a weight (attention's activation x activation stays float)
    matmul_const_b_only: bool = False
    # "static": QDQ with calibrated activation ranges; "dynamic": int8 weights, each call's activations
    # quantized at run time at ``op_types`` (ORT fuses these into DynamicQuantizeMatMul; no Q/DQ chain)
    activations: str = "static"
    # with "dynamic": op types quantized statically first (ORT's per-call ConvInteger ran 5x slower than
    # float on cnn_small, its static QLinearConv as fast), calibrated as a static recipe is
    static_op_types: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


ANY_ISA = ("x86-vnni", "x86-avx2", "x86", "arm-i8mm", "arm-dotprod", "arm-neon", "other")


@dataclass(frozen=True)
class Int8Recipe:
    name: str
    format: str
    isa: tuple[str, ...]  # the ISA classes (CpuFeatures.isa) it is chosen for
    settings: OrtQuantRecipe | Pt2eRecipe
    why: str

    def to_json(self) -> dict:
        return {"name": self.name, "settings": self.settings.to_json()}


RECIPES: Registry[Int8Recipe] = Registry("INT8 recipe")

# PT2E (pte, tflite): only the layers with weights are quantized; LayerNorm, the residual adds, softmax / GELU
# inputs and the attention scale stay float. On the random-weight ViT-Ti/16 (PyTorch simulation of the
# quantized graph, 16 random inputs) the global config gave cosine 0.914; LayerNorm in float alone 0.923;
# linear + conv only 0.611 (edgekit's LayerNorm spells its two means as linears, for XNNPACK, so an
# operator-type config quantizes the squared deviations feeding the variance); layers with weights only,
# LayerNorm's own linears excluded, 0.9992 (as did LayerNorm and the adds kept float). Module-type configs
# select them the same way in both quantizers. The same settings serve every ISA: XNNPACK's and LiteRT's int8
# GEMMs accumulate in int32 on every CPU (no int16 pair sums to saturate), so no 7-bit weights.
_PT2E_LAYERS = Pt2eRecipe(quantize_modules=("Linear", "Conv1d", "Conv2d"), float_modules=("LayerNorm",))
# XNNPACK's conv patterns hold the conv's weight and the ReLU after it, which no module-type filter matches:
# under _PT2E_LAYERS every convolution stays float (cnn_small's .pte: 1.00x the FP32 size). Naming the conv
# operators quantizes them (cnn_small: 289 -> 87 KiB, no accuracy lost, 0 ops off the delegate), but a ViT
# whose patch embedding is quantized this way writes a .pte that ExecuTorch cannot load ("Failed to load
# method forward", error 1): the failure issue #22 reported, reproduced and not yet understood. So CNNs get
# it by override only.
_PT2E_CONVS = Pt2eRecipe(
    quantize_modules=("Linear",), quantize_operators=("conv1d", "conv2d"), float_modules=("LayerNorm",)
)

for _recipe in (
    Int8Recipe("pte-xnnpack", "pte", ANY_ISA, _PT2E_LAYERS,
               "XNNPACKQuantizer on Linear / Conv layers only; norms, adds and activations stay float"),
    Int8Recipe("pte-xnnpack-convs", "pte", (), _PT2E_CONVS,
               "as pte-xnnpack, convolutions quantized too (by operator type): for CNNs; a ViT's .pte then "
               "fails to load"),
    Int8Recipe("pte-xnnpack-all", "pte", (), Pt2eRecipe(),
               "XNNPACKQuantizer's global config on every op it annotates (edgekit before #22)"),
    # layers-only would lose the static file's int8 inputs and outputs (litert-torch then keeps float I/O),
    # which callers of a static .tflite rely on: the default keeps the global config, LayerNorm float
    Int8Recipe("tflite-pt2e", "tflite", ANY_ISA, Pt2eRecipe(float_modules=("LayerNorm",)),
               "litert-torch PT2EQuantizer's global config, LayerNorm kept float; int8 file inputs / outputs"),
    Int8Recipe("tflite-pt2e-layers", "tflite", (), _PT2E_LAYERS,
               "litert-torch PT2EQuantizer on Linear layers only (float file I/O); the faithful one on ViTs. "
               "Convolutions stay float: litert-torch ignores operator-type configs"),
    Int8Recipe("tflite-pt2e-all", "tflite", (), Pt2eRecipe(),
               "litert-torch PT2EQuantizer's global config on every op it annotates (edgekit before #22)"),
    # Static QDQ on VNNI ran no faster than FP32 (ViT-Ti/16 at 224, Xeon with AVX-512 VNNI: 1.05x). ORT's
    # profiler says why: QLinearSoftmax took 7x float Softmax's time, the Q/DQ pairs around every op left in
    # float (LayerNorm, GELU, bias adds) another 15%, and QLinearMatMul requantizes each output only to be
    # dequantized for the bias add. Dynamic activations keep everything between the GEMMs in float and quantize
    # each GEMM's input once, in the fused kernel: 1.5x there, cosine 0.9995 (benchmarks/int8.py).
    Int8Recipe("onnx-vnni", "onnx", ("x86-vnni",),
               OrtQuantRecipe(op_types=("Gemm", "MatMul"), activations="dynamic", static_op_types=("Conv",),
                              activation_type="QUInt8"),
               "int8 weights per channel, activations quantized per call at every MatMul / Gemm (ORT's fused "
               "DynamicQuantizeMatMul on VNNI), convolutions static QDQ; everything between them stays float"),
    Int8Recipe("onnx-vnni-static", "onnx", (),
               OrtQuantRecipe(op_types=("Conv", "Gemm", "MatMul"), activation_type="QUInt8"),
               "static QDQ, full-range int8 weights, uint8 activations fused into QLinear kernels (slower than "
               "the dynamic recipe on VNNI: QLinearSoftmax and the Q/DQ pairs between float ops)"),
    Int8Recipe("onnx-avx2", "onnx", ("x86-avx2", "x86"),
               OrtQuantRecipe(reduce_range=True, op_types=("Conv", "Gemm", "MatMul")),
               "7-bit weights: VPMADDUBSW's int16 pair sums saturate with full-range weights"),
    Int8Recipe("onnx-arm", "onnx", ("arm-i8mm", "arm-dotprod", "arm-neon", "other"),
               OrtQuantRecipe(op_types=("Conv", "Gemm", "MatMul")),
               "full-range int8 weights: SDOT / SMMLA / widening NEON multiplies accumulate in int32"),
):  # fmt: skip
    RECIPES.add(_recipe.name, _recipe)


def choose_recipe(fmt: str, cpu: CpuFeatures | None, override: str | None = None) -> Int8Recipe:
    """The recipe named by ``override`` (it must be one of ``fmt``'s), else ``fmt``'s recipe for the CPU's ISA
    (``cpu`` None: this machine's)."""
    cpu = cpu or host_cpu()
    if override is not None:
        recipe = RECIPES.get(override)  # an unknown name: UnknownNameError with close matches
        if recipe.format != fmt:
            raise UnsupportedOptionError(f"--int8-recipe for {fmt}", override, recipes_for(fmt))
        return recipe
    for _, recipe in RECIPES.items():
        if recipe.format == fmt and cpu.isa in recipe.isa:
            return recipe
    raise UnsupportedOptionError(f"CPU {cpu.isa} for {fmt} INT8", cpu.name, recipes_for(fmt))


def recipes_for(fmt: str) -> list[str]:
    return [name for name, r in RECIPES.items() if r.format == fmt]


def pt2e_recipe_for(fmt: str, options: ExportOptions) -> tuple[Int8Recipe | None, dict]:
    """The PT2E recipe of a static export (None for int8-dynamic) and the quantization config's keywords."""
    settings = dict(PT2E_SETTINGS[options.precision])
    if options.precision != "int8":
        return None, settings
    recipe = choose_recipe(fmt, options.cpu, options.int8_recipe)
    settings["is_per_channel"] = recipe.settings.per_channel
    return recipe, settings
