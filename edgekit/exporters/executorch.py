"""ExecuTorch (``.pte``): torch.export -> to_edge_transform_and_lower(XNNPACK) -> to_executorch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import ClassVar

import torch

from edgekit.errors import UnsupportedOptionError
from edgekit.exporters.base import check_format_environment, stage
from edgekit.models.spec import ModelSpec
from edgekit.types import ExportOptions, GraphSpec, LoweredGraph, QuantizationScheme

# Nodes that are bookkeeping, not kernels: tuple unpacking and the delegate call itself.
_NOT_KERNELS = {"getitem", "executorch_call_delegate"}


class ExecuTorchExporter:
    format: ClassVar[str] = "pte"
    extra: ClassVar[str] = "export"

    def check_environment(self) -> None:
        check_format_environment(self.format, self.extra)

    def export(self, spec: ModelSpec, out_dir: Path, options: ExportOptions) -> LoweredGraph:
        self.check_environment()
        from executorch.exir import to_edge_transform_and_lower

        partitioners = self._partitioners(options.delegate)
        if spec.graphs:
            return self._export_methods(spec, out_dir, partitioners)
        module, quantization = spec.module, None
        if options.quantized:
            module, quantization = self._quantize(spec, options)
        with stage("pte", "tracing with torch.export"):
            program = torch.export.export(module, spec.example_inputs)
        with stage("pte", f"lowering to {options.delegate or 'portable'} kernels"):
            edge = to_edge_transform_and_lower(program, partitioner=partitioners)
            undelegated = undelegated_ops(edge.exported_program().graph_module)
        with stage("pte", "serialising the ExecuTorch program"):
            buffer = edge.to_executorch().buffer
        filename = "model.pte"
        (out_dir / filename).write_bytes(buffer)
        graph = GraphSpec("forward", filename, spec.input_specs, spec.output_specs(), entry="forward")
        return LoweredGraph((graph,), (filename,), undelegated, quantization)

    @staticmethod
    def _export_methods(spec: ModelSpec, out_dir: Path, partitioners: list) -> LoweredGraph:
        """Every SubGraph as a method of one program: one file, the weights they share stored once."""
        from executorch.exir import to_edge_transform_and_lower

        with stage("pte", f"tracing {len(spec.graphs)} graphs with torch.export"):
            programs = {g.name: torch.export.export(g.module, g.example_inputs) for g in spec.graphs}
        with stage("pte", "lowering every method"):
            edge = to_edge_transform_and_lower(programs, partitioner=partitioners)
            undelegated: Counter[str] = Counter()
            for name in programs:
                undelegated.update(undelegated_ops(edge.exported_program(name).graph_module))
        with stage("pte", "serialising the ExecuTorch program"):
            buffer = edge.to_executorch().buffer
        filename = "model.pte"
        (out_dir / filename).write_bytes(buffer)
        graphs = tuple(GraphSpec(g.name, filename, g.input_specs, g.output_specs(), entry=g.name) for g in spec.graphs)
        return LoweredGraph(graphs, (filename,), dict(sorted(undelegated.items())), None)

    @staticmethod
    def _quantize(spec: ModelSpec, options: ExportOptions) -> tuple[torch.nn.Module, QuantizationScheme]:
        if options.delegate != "xnnpack":
            raise UnsupportedOptionError("--delegate with --int8", options.delegate, ["xnnpack"])
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        from edgekit.exporters.int8_recipes import pt2e_recipe_for
        from edgekit.transforms.quantize import configure_quantizer, pt2e_quantize, pt2e_scheme

        recipe, settings = pt2e_recipe_for("pte", options)
        config = get_symmetric_quantization_config(**settings)
        if recipe is None:  # int8-dynamic: every linear / conv, as before
            quantizer = XNNPACKQuantizer().set_global(config)
        else:
            quantizer = configure_quantizer(XNNPACKQuantizer(), config, recipe.settings, spec.module)
        label = recipe.name if recipe else "dynamic"
        with stage("pte", f"quantizing to {options.precision} (PT2E, XNNPACKQuantizer, {label})"):
            module = pt2e_quantize(spec, quantizer, options.calibration)
        return module, pt2e_scheme("torchao PT2E + executorch XNNPACKQuantizer", settings, recipe, options.cpu)

    @staticmethod
    def _partitioners(delegate: str | None) -> list:
        if delegate in (None, "xnnpack"):
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

            return [XnnpackPartitioner()]
        if delegate == "portable":
            return []
        raise UnsupportedOptionError("--delegate", delegate, ["xnnpack", "portable"])


def undelegated_ops(graph_module: torch.fx.GraphModule) -> dict[str, int]:
    """Kernels left outside any delegate, by op name (``aten.mean.dim`` ...)."""
    counts: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if name in _NOT_KERNELS:
            continue
        counts[_op_name(node.target)] += 1
    return dict(sorted(counts.items()))


def _op_name(target) -> str:
    # EdgeOpOverload prints its whole schema; its name() is "aten::mean.dim".
    name = target.name() if hasattr(target, "name") and callable(target.name) else str(target)
    return name.replace("::", ".")
