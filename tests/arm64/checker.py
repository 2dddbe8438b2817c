"""Run many bundles in one process and save what they output: ``python checker.py JOBS.json RESULT.json``.

Runs inside the emulated arm64 environment (numpy and edgekit only; an emulated interpreter takes seconds to
start and import the runtimes, so one process does every bundle) and, imported, on x86 to produce the same
outputs from the same code for comparison. A job that fails is recorded with its error and the others still
run: the test names the bundle that failed.

A job is ``{"id", "kind", "bundle", "inputs": npz, "outputs": npz, ...}``; ``kind`` is one of JOB_KINDS.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def run_graph(job: dict[str, Any]) -> dict[str, np.ndarray]:
    """Samples stored as ``{i}/{input}``; outputs saved as ``{i}/{output}``."""
    from edgekit import runtimes

    inputs = np.load(job["inputs"])
    count = len({key.split("/")[0] for key in inputs.files})
    out: dict[str, np.ndarray] = {}
    with runtimes.load(job["bundle"], graph=job.get("graph"), threads=1) as runtime:
        for i in range(count):
            sample = {spec.name: inputs[f"{i}/{spec.name}"] for spec in runtime.input_specs}
            for name, value in runtime.run(sample).items():
                out[f"{i}/{name}"] = np.asarray(value)
        out["backend"] = np.array(str(getattr(runtime, "backend", None) or ""))
    return out


def run_stream(job: dict[str, Any]) -> dict[str, np.ndarray]:
    """``sequences`` (N, T, F) streamed frame by frame from the zero state: ``logits`` (N, T, C) and, for a
    spiking model, ``spikes`` (N, neurons, T)."""
    from edgekit.streaming import StreamSession

    sequences = np.load(job["inputs"])["sequences"]
    logits, spikes = [], []
    with StreamSession(job["bundle"], threads=1) as session:
        for sequence in sequences:
            session.reset()
            got, got_spikes = session.run_recording(sequence)
            logits.append(got)
            if got_spikes is not None:
                spikes.append(got_spikes)
    return {"logits": np.stack(logits), **({"spikes": np.stack(spikes)} if spikes else {})}


def run_generate(job: dict[str, Any]) -> dict[str, np.ndarray]:
    """Greedy decoding of each of ``prompts``: ``tokens/{i}`` (the generated ids, stop token excluded)."""
    from edgekit.generation.bundle_runner import BundleSeq2SeqRunner
    from edgekit.generation.sampling import generate

    out = {}
    with BundleSeq2SeqRunner(job["bundle"], threads=1) as runner:
        for i, prompt in enumerate(job["prompts"]):
            result = generate(runner, prompt, job["max_new_tokens"])
            out[f"tokens/{i}"] = np.asarray(result.tokens, dtype=np.int64)
    return out


JOB_KINDS: dict[str, Callable[[dict[str, Any]], dict[str, np.ndarray]]] = {
    "graph": run_graph,
    "stream": run_stream,
    "generate": run_generate,
}


def machine() -> dict[str, Any]:
    """Where the jobs ran: CPU architecture, the CPU features the kernel (here: qemu) reports, versions."""
    info: dict[str, Any] = {"machine": platform.machine(), "python": platform.python_version(),
                            "numpy": np.__version__}  # fmt: skip
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        info["hwcap"], info["hwcap2"] = hex(libc.getauxval(16)), hex(libc.getauxval(26))
    except (OSError, AttributeError):
        pass
    from edgekit.toolchain import package_version

    for package in ("onnxruntime", "ai-edge-litert"):
        info[package] = package_version(package)
    info["torch_importable"] = "torch" in sys.modules
    return info


def run_jobs(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    results = {}
    for job in jobs:
        start = time.monotonic()
        try:
            outputs = JOB_KINDS[job["kind"]](job)
            np.savez(job["outputs"], **outputs)
            results[job["id"]] = {"ok": True, "seconds": time.monotonic() - start}
        except Exception as exc:  # noqa: BLE001 -- recorded per job, the test reports it by bundle
            error = f"{type(exc).__name__}: {exc}"
            results[job["id"]] = {"ok": False, "error": error, "traceback": traceback.format_exc(limit=4),
                                  "seconds": time.monotonic() - start}  # fmt: skip
    return {"machine": machine(), "jobs": results}


def main(argv: list[str]) -> int:
    jobs_file, result_file = argv
    result = run_jobs(json.loads(Path(jobs_file).read_text()))
    Path(result_file).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
