"""The one round-trip check every format test uses: export -> load with the runtime -> compare with PyTorch."""

from __future__ import annotations

import numpy as np
import torch

from edgekit import runtimes
from edgekit.bundle import read_bundle
from edgekit.inputs import make_inputs
from edgekit.models import prepare_model, run_module
from edgekit.types import Tolerance
from edgekit.validate import compare


def assert_roundtrip(bundle_dir, model: str, config: dict, seed: int = 1234, weights=None) -> dict:
    """Re-check a bundle independently of the exporter's own validation, on fresh inputs."""
    bundle = read_bundle(bundle_dir)
    manifest = bundle.manifest.to_json()
    assert manifest["validation"]["passed"] is True, manifest["validation"]
    for key in ("max_abs_err", "cosine", "top1_agreement", "tolerance"):
        assert key in manifest["validation"]
    spec = prepare_model(model, weights, **config)
    for graph in spec.graphs or (spec,):  # a multi-graph model: each graph against its own module
        inputs = make_inputs(graph.input_specs, 3, seed=seed)
        reference = []
        for sample in inputs:
            outputs = run_module(graph.module, tuple(torch.from_numpy(sample[n]) for n in graph.input_names))
            reference.append({n: o.numpy() for n, o in zip(graph.output_names, outputs, strict=False)})
        with runtimes.load(bundle_dir, graph=graph.name if spec.graphs else None) as runtime:
            assert [s.name for s in runtime.input_specs] == list(graph.input_names)
            candidate = [runtime.run(sample) for sample in inputs]
        result = compare(reference, candidate, Tolerance(), classify=spec.task == "classification")
        assert result.passed, result.summary()
        assert all(np.isfinite(c[n]).all() for c in candidate for n in c)
    return manifest
