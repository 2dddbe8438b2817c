"""Deployment targets: a device class mapped to the format, delegate and precision that serve it best.

The reasons are part of the table so that ``edgekit targets`` can show them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.cpu import CpuFeatures, device_cpu, host_cpu
from edgekit.registry import Registry


@dataclass(frozen=True)
class Target:
    name: str
    format: str
    delegate: str | None
    precision: str
    why: str
    # the device's CPU (a key of cpu.DEVICE_CPUS) an INT8 recipe is chosen for; None: the exporting machine's own
    cpu: str | None = None


TARGETS: Registry[Target] = Registry("target")

for _target in (
    Target(
        "android",
        "pte",
        "xnnpack",
        "fp32",
        "ExecuTorch is PyTorch's on-device runtime for Android apps; XNNPACK runs the float kernels on the ARM CPU.",
        "armv8-a",
    ),
    Target(
        "ios",
        "pte",
        "xnnpack",
        "fp32",
        "ExecuTorch links into iOS apps the same way; XNNPACK is the portable CPU delegate "
        "(Core ML is not verified here).",
        "armv8-a",
    ),
    Target(
        "rpi4",
        "tflite",
        None,
        "fp32",
        "LiteRT applies XNNPACK itself and needs only tflite-runtime + numpy on a Pi; "
        "it was the fastest runtime on ViT-Ti here.",
        "cortex-a72",
    ),
    Target(
        "rpi5",
        "tflite",
        None,
        "fp32",
        "As rpi4: LiteRT's XNNPACK kernels use the Cortex-A76 NEON units, no torch needed on the device.",
        "cortex-a76",
    ),
    Target(
        "jetson",
        "onnx",
        None,
        "fp32",
        "ONNX Runtime ships Jetson builds with CUDA and TensorRT execution providers; "
        "the CPU provider verifies it here.",
        "cortex-a78ae",
    ),
    Target(
        "linux-x86_64",
        "onnx",
        None,
        "fp32",
        "ONNX Runtime is the most widely deployed server/desktop runtime and installs as one wheel without torch.",
    ),
):
    TARGETS.add(_target.name, _target)


def get_target(name: str) -> Target:
    return TARGETS.get(name)


def target_cpu(name: str | None) -> CpuFeatures:
    """The CPU an export for target ``name`` will run on: the preset's device, else this machine."""
    target = get_target(name) if name else None
    return device_cpu(target.cpu, target.name) if target and target.cpu else host_cpu()
