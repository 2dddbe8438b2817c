"""INT8 recipes per CPU: detection from /proc/cpuinfo texts, the table's choice per format, presets, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.cpu import host_cpu, parse_cpuinfo
from edgekit.errors import UnknownNameError, UnsupportedOptionError
from edgekit.exporters.int8_recipes import RECIPES, choose_recipe
from edgekit.exporters.pipeline import resolve_options

XEON_VNNI = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 avx512f avx512dq avx512bw avx512vl avx_vnni avx512_vnni

processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu
"""
ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7R13 Processor
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 vaes vpclmulqdq
"""
PI5 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1
"""
PI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


@pytest.mark.parametrize(
    ("text", "machine", "isa", "flags", "name", "recipes"),
    [
        (XEON_VNNI, "x86_64", "x86-vnni", {"avx2", "avx512f", "avx512_vnni", "avx_vnni"}, "Intel(R) Xeon(R) Processor",
         {"onnx": "onnx-vnni", "pte": "pte-xnnpack", "tflite": "tflite-pt2e"}),
        (ZEN3, "x86_64", "x86-avx2", {"avx2"}, "AMD EPYC 7R13 Processor",
         {"onnx": "onnx-avx2", "pte": "pte-xnnpack", "tflite": "tflite-pt2e"}),
        (PI5, "aarch64", "arm-dotprod", {"asimd", "asimddp"}, "Cortex-A76",
         {"onnx": "onnx-arm", "pte": "pte-xnnpack", "tflite": "tflite-pt2e"}),
        (PI4, "aarch64", "arm-neon", {"asimd"}, "Cortex-A72",
         {"onnx": "onnx-arm", "pte": "pte-xnnpack", "tflite": "tflite-pt2e"}),
    ],
    ids=["xeon-vnni", "zen3-avx2", "pi5-a76", "pi4-a72"],
)  # fmt: skip
def test_cpuinfo_gives_the_isa_and_the_recipe_per_format(text, machine, isa, flags, name, recipes):
    cpu = parse_cpuinfo(text, machine)
    assert cpu.isa == isa and cpu.flags == flags and cpu.name == name
    assert {fmt: choose_recipe(fmt, cpu).name for fmt in recipes} == recipes
    onnx = choose_recipe("onnx", cpu).settings
    # 7-bit weights exactly where VPMADDUBSW's int16 sums can saturate: x86 without VNNI
    assert onnx.reduce_range == (isa == "x86-avx2")


def test_a_target_preset_chooses_for_the_device_not_this_machine():
    pi5 = resolve_options(target="rpi5", precision="int8")
    assert pi5.cpu.isa == "arm-dotprod" and pi5.cpu.source == "target rpi5"
    pi4 = resolve_options(target="rpi4", format="onnx", precision="int8")
    assert pi4.cpu.isa == "arm-neon" and choose_recipe("onnx", pi4.cpu).name == "onnx-arm"
    jetson = resolve_options(target="jetson", precision="int8")
    assert jetson.cpu.arch == "arm64" and "asimddp" in jetson.cpu.flags
    assert resolve_options(format="onnx").cpu.source == "host"


def test_override_by_name_and_close_match_errors():
    cpu = parse_cpuinfo(XEON_VNNI, "x86_64")
    assert choose_recipe("onnx", cpu, "onnx-avx2").settings.reduce_range
    assert resolve_options(format="onnx", precision="int8", int8_recipe="onnx-avx2").int8_recipe == "onnx-avx2"
    with pytest.raises(UnknownNameError, match="onnx-vnni"):
        resolve_options(format="onnx", precision="int8", int8_recipe="onnx-vnn")
    with pytest.raises(UnsupportedOptionError, match="pte-xnnpack"):
        resolve_options(format="pte", precision="int8", int8_recipe="onnx-vnni")  # another format's recipe
    with pytest.raises(UnsupportedOptionError, match="int8-recipe"):
        resolve_options(format="onnx", int8_recipe="onnx-vnni")  # FP32 has no recipe


def test_every_format_has_a_recipe_for_every_isa():
    for fmt in ("pte", "tflite", "onnx"):
        for isa in ("x86-vnni", "x86-avx2", "x86", "arm-i8mm", "arm-dotprod", "arm-neon", "other"):
            chosen = [r.name for _, r in RECIPES.items() if r.format == fmt and isa in r.isa]
            assert len(chosen) == 1, (fmt, isa, chosen)


def test_cli_unknown_recipe_is_one_line_exit_2():
    from click.testing import CliRunner

    from edgekit.cli import cli

    result = CliRunner().invoke(cli, ["export", "cnn_small", "-f", "onnx", "--int8", "--int8-recipe", "onnx-vnn"])
    assert result.exit_code == 2
    assert "unknown INT8 recipe 'onnx-vnn'" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("fmt", ["pte", "tflite", "onnx"])
def test_trained_vit_int8_records_recipe_and_cpu_and_passes_the_gate(int8, fmt):
    from edgekit.bundle import read_bundle
    from edgekit.cpu import host_cpu

    result = int8.get("vit_digits", fmt)
    assert result.validation.passed and result.validation.criterion == "accuracy"
    assert result.validation.accuracy_drop <= 2.0
    scheme = read_bundle(result.bundle_dir).manifest.quantization.scheme  # read back from edgekit.json
    host = host_cpu()
    assert scheme.recipe == choose_recipe(fmt, host).name
    assert scheme.cpu == host and scheme.cpu.source == "host"
    assert scheme.details["settings"] == RECIPES.get(scheme.recipe).settings.to_json()


def test_recipe_override_is_exported_and_recorded(int8, tmp_path):
    from edgekit.exporters.pipeline import export

    result = export("cnn_small", format="onnx", precision="int8", weights=int8.weights("cnn_small"), calib_samples=32,
                    int8_recipe="onnx-avx2", out_dir=tmp_path / "b")  # fmt: skip
    quant = result.manifest.to_json()["quantization"]
    assert quant["recipe"] == "onnx-avx2" and quant["weights"].startswith("7-bit")
    assert quant["settings"]["reduce_range"] is True and quant["cpu"]["source"] == "host"
    assert result.validation.passed and result.validation.accuracy_drop <= 2.0


@pytest.mark.parametrize("fmt", ["pte", "tflite"])
def test_pt2e_recipe_quantizes_the_layers_and_keeps_layernorm_float(fmt, tiny_configs):
    """Both quantizers honour the module-type configs: every nn.Linear reads dequantized int8, LayerNorm's own
    mean linears read float (litert-torch's filter compares type strings, XNNPACK's classes)."""
    import torch

    from edgekit.calibration import load_calibration
    from edgekit.models import prepare_model
    from edgekit.transforms.quantize import configure_quantizer, pt2e_quantize, qualified_name

    spec = prepare_model("vit_tiny", **tiny_configs["vit_tiny"])
    if fmt == "pte":
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer as Quantizer,
        )
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

        key = None
    else:
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer as Quantizer
        from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config

        key = qualified_name
    recipe = RECIPES.get({"pte": "pte-xnnpack", "tflite": "tflite-pt2e-layers"}[fmt]).settings
    quantizer = configure_quantizer(Quantizer(), get_symmetric_quantization_config(is_per_channel=True), recipe,
                                    spec.module, key)  # fmt: skip
    calibration = load_calibration(spec.input_specs, None, None, 4)
    graph = pt2e_quantize(spec, quantizer, calibration, fold_quantize=False).graph
    linears = [n for n in graph.nodes if n.target == torch.ops.aten.linear.default]
    in_norm = lambda n: any("LayerNorm" in str(t) for _, t in n.meta.get("nn_module_stack", {}).values())  # noqa: E731
    reads_int8 = lambda n: "dequantize" in str(n.args[0].target)  # noqa: E731
    layers = [n for n in linears if not in_norm(n)]
    norms = [n for n in linears if in_norm(n)]
    assert layers and norms
    assert all(reads_int8(n) for n in layers), [n.name for n in layers if not reads_int8(n)]
    assert not any(reads_int8(n) for n in norms), [n.name for n in norms if reads_int8(n)]
    adds = [n for n in graph.nodes if n.target == torch.ops.aten.add.Tensor]
    assert adds and not any(all("dequantize" in str(a.target) for a in n.args if hasattr(a, "target")) for n in adds)


def test_the_vnni_onnx_recipe_quantizes_gemm_inputs_per_call(int8, tmp_path):
    """On VNNI the ONNX recipe quantizes each MatMul / Gemm input when it runs (no Q/DQ chain between the
    layers) and convolutions statically (QDQ that ORT fuses into QLinearConv), calibrated and recorded."""
    import onnx

    from edgekit.exporters.pipeline import export

    for model in ("vit_digits", "cnn_small"):  # a patch-embedding conv, then a CNN of convs
        result = export(model, format="onnx", precision="int8", weights=int8.weights(model), calib_samples=8,
                        int8_recipe="onnx-vnni", out_dir=tmp_path / model, allow_mismatch=True)  # fmt: skip
        quant = result.manifest.to_json()["quantization"]
        assert quant["recipe"] == "onnx-vnni" and quant["settings"]["activations"] == "dynamic"
        assert "run time" in quant["activations"]
        graph = onnx.load(Path(result.bundle_dir) / "model.onnx", load_external_data=False).graph
        ops = [n.op_type for n in graph.node]
        assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
        convs = [n for n in graph.node if n.op_type == "Conv"]
        assert convs
        produced_by = {out: n for n in graph.node for out in n.output}
        # every remaining float Conv reads a dequantized input and weight: it runs as an int8 kernel
        assert all(produced_by[i].op_type == "DequantizeLinear" for c in convs for i in c.input[:2])
        assert quant["calibration"]["samples"] == 8 and "Conv static" in quant["activations"]
        if host_cpu().isa == "x86-vnni":  # elsewhere u8 x s8 pair sums may saturate: that CPU gets another recipe
            assert result.validation.passed and result.validation.accuracy_drop <= 2.0


@pytest.mark.parametrize(("recipe", "int8_layers"), [("pte-xnnpack-convs", 7), ("pte-xnnpack", 1)])
def test_only_the_conv_recipe_quantizes_a_cnns_convolutions(recipe, int8_layers):
    """XNNPACK's conv patterns hold the weight and the ReLU after the conv, which no module-type filter matches:
    the default recipe leaves a folded CNN's six convs float (only the head is int8); the conv recipe names the
    conv operators and quantizes all seven layers."""
    import dataclasses

    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    from edgekit.calibration import load_calibration
    from edgekit.models import prepare_model
    from edgekit.transforms.quantize import configure_quantizer, pt2e_quantize
    from edgekit.transforms.reparam import fold_norms

    spec = prepare_model("cnn_small")
    module, _ = fold_norms(spec.module)
    spec = dataclasses.replace(spec, module=module)
    quantizer = configure_quantizer(XNNPACKQuantizer(), get_symmetric_quantization_config(is_per_channel=True),
                                    RECIPES.get(recipe).settings, module)  # fmt: skip
    graph = pt2e_quantize(spec, quantizer, load_calibration(spec.input_specs, None, None, 4), fold_quantize=False).graph
    layers = [n for n in graph.nodes if n.target in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)]
    assert len(layers) == 7  # six convs and the head
    int8 = [n for n in layers if "dequantize" in str(n.args[0].target) and "dequantize" in str(n.args[1].target)]
    assert len(int8) == int8_layers
