"""Bundles exported here (x86) run on the devices' CPU: an emulated Cortex-A76 with Debian's arm64 Python 3.11
and the aarch64 wheels of the runtimes (`make test-arm64`).

Every bundle is run three ways on the same inputs: by the arm64 runtimes (one emulated process runs them all,
tests/arm64/checker.py), by the same runtimes' x86 builds here, and by PyTorch. arm64 must agree with PyTorch
and with x86 under the bundle's own verdict from its export -- the manifest's tolerance (float), its INT8
quality gate (accuracy on the held-out digits, top-1 agreement), exact spike trains but for a first flip at the
threshold (spiking streams), identical greedy tokens (seq2seq). The largest arm64-vs-x86 difference of each
bundle goes into the run's summary table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest
import torch

from edgekit.bundle import read_bundle
from edgekit.data import load_dataset
from edgekit.exporters.verify_stream import lif_threshold, reference_steps
from edgekit.generation.sampling import generate
from edgekit.generation.tasks import TASKS
from edgekit.generation.torch_runner import TorchSeq2SeqRunner
from edgekit.inputs import make_inputs
from edgekit.models import prepare_model
from edgekit.models.spec import run_module
from edgekit.validate import compare, compare_spikes, judge_quantized, top1_agreement
from tests.arm64 import checker
from tests.arm64.report import REPORT, Row
from tests.conftest import TINY_CONFIGS

pytestmark = pytest.mark.arm64

CHECKER = Path(checker.__file__)
ARM64_TIMEOUT = 1200  # one emulated process for every bundle below (~2-4 min on a quiet 2-core machine)
FORMATS = ("tflite", "onnx")
RUNTIME_PACKAGES = {"tflite": "ai-edge-litert", "onnx": "onnxruntime"}
FLOAT_SAMPLES = 6
STREAM_SEQUENCES = 8
PROMPTS = [s for s, _ in TASKS.get("reverse").examples(6, seed=99)] + ["", "a"]


@dataclass(frozen=True)
class Case:
    model: str
    fmt: str
    precision: str
    check: str  # a key of CHECKS

    @property
    def id(self) -> str:
        return f"{self.model}/{self.fmt}/{self.precision}"


@dataclass
class Prepared:
    """A bundle, the checker job that runs it, and what PyTorch said on the same inputs."""

    case: Case
    bundle: Path
    job: dict[str, Any]
    reference: Any
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    row: Row
    problems: list[str]


class Check(Protocol):
    job_kind: str  # a key of checker.JOB_KINDS

    def prepare(self, case: Case, fixtures: Callable[[str], Any], work: Path) -> Prepared: ...

    def judge(self, p: Prepared, arm: dict[str, np.ndarray], x86: dict[str, np.ndarray], runtime: str) -> Verdict: ...


def _samples(outputs: dict[str, np.ndarray], count: int, names: list[str]) -> list[dict[str, np.ndarray]]:
    return [{n: outputs[f"{i}/{n}"] for n in names} for i in range(count)]


def _torch_outputs(spec, samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    out = []
    with torch.no_grad():
        for sample in samples:
            outputs = run_module(spec.module, tuple(torch.from_numpy(sample[n]) for n in spec.input_names))
            out.append({n: o.numpy() for n, o in zip(spec.output_names, outputs, strict=False)})
    return out


def _graph_job(p_id: str, bundle: Path, samples: list[dict[str, np.ndarray]], work: Path) -> dict[str, Any]:
    inputs = work / f"{p_id.replace('/', '-')}-in.npz"
    np.savez(inputs, **{f"{i}/{k}": v for i, s in enumerate(samples) for k, v in s.items()})
    return {"id": p_id, "kind": "graph", "bundle": str(bundle), "inputs": str(inputs)}


def _max_diff(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]]) -> float:
    return max(float(np.max(np.abs(x[n].astype(np.float64) - y[n]))) for x, y in zip(a, b, strict=True) for n in x)


def _failures(result, bundle: str, runtime: str, against: str) -> list[str]:
    return [
        f"{bundle} on arm64 {runtime}: output {o['name']} "
        + (o["error"] if "error" in o else f"max |arm64 - {against}| {o['max_abs_err']:.3g} (allowed "
           f"{o['allowed_abs_err']:.3g}), cosine {o['cosine']:.6f} (min {result.tolerance.min_cosine})")
        for o in result.per_output
        if not o.get("passed", False)
    ]  # fmt: skip


class FloatGraph:
    """fp32 classifiers on random normal inputs, judged with the manifest's tolerance."""

    job_kind = "graph"

    def prepare(self, case: Case, fixtures: Callable[[str], Any], work: Path) -> Prepared:
        bundle = fixtures("bundles").path(case.model, case.fmt)
        manifest = read_bundle(bundle).manifest
        graph = read_bundle(bundle).graph()
        samples = make_inputs(graph.inputs, FLOAT_SAMPLES, seed=11)
        spec = prepare_model(case.model, **TINY_CONFIGS[case.model])
        reference = _torch_outputs(spec, samples)
        tolerance = manifest.validation.tolerance
        names = [o.name for o in graph.outputs]
        extra = {"tolerance": tolerance, "names": names, "classify": spec.task == "classification"}
        return Prepared(case, bundle, _graph_job(case.id, bundle, samples, work), reference, extra)

    def judge(self, p: Prepared, arm, x86, runtime: str) -> Verdict:
        names, tol = p.extra["names"], p.extra["tolerance"]
        arm_s, x86_s = _samples(arm, FLOAT_SAMPLES, names), _samples(x86, FLOAT_SAMPLES, names)
        reference = [{n: r[n] for n in names} for r in p.reference]
        vs_torch = compare(reference, arm_s, tol, classify=p.extra["classify"])
        vs_x86 = compare(x86_s, arm_s, tol, classify=p.extra["classify"])
        problems = _failures(vs_torch, p.case.id, runtime, "PyTorch") + _failures(vs_x86, p.case.id, runtime, "x86")
        agreement = "-" if vs_x86.top1_agreement is None else f"top-1 {vs_x86.top1_agreement:.0%}"
        row = Row(p.case.id, runtime, "outputs", _max_diff(arm_s, x86_s), _max_diff(arm_s, reference),
                  vs_torch.allowed_abs_err, agreement, FLOAT_SAMPLES, not problems)  # fmt: skip
        return Verdict(row, problems)


class Int8Graph:
    """Static INT8 classifiers trained on digits, on the 359 held-out digits: the manifest's quality gate against
    float PyTorch (accuracy drop), and against x86 (accuracy drop and top-1 agreement)."""

    job_kind = "graph"

    def prepare(self, case: Case, fixtures: Callable[[str], Any], work: Path) -> Prepared:
        int8 = fixtures("int8")
        bundle = Path(int8.get(case.model, case.fmt).bundle_dir)
        manifest = read_bundle(bundle).manifest
        graph = read_bundle(bundle).graph()
        spec = prepare_model(case.model, int8.weights(case.model))
        batches, labels = load_dataset("digits", graph.inputs[0].shape).test_batches(graph.inputs[0].shape[0])
        samples = [{graph.inputs[0].name: x} for x in batches]
        reference = _torch_outputs(spec, samples)
        gate = manifest.validation.gate
        names = [o.name for o in graph.outputs]
        return Prepared(case, bundle, _graph_job(case.id, bundle, samples, work), reference,
                        {"gate": gate, "labels": labels, "names": names, "count": len(samples)})  # fmt: skip

    def judge(self, p: Prepared, arm, x86, runtime: str) -> Verdict:
        names, gate, labels, count = p.extra["names"], p.extra["gate"], p.extra["labels"], p.extra["count"]
        arm_s, x86_s = _samples(arm, count, names), _samples(x86, count, names)
        reference = [{n: r[n] for n in names} for r in p.reference]
        problems = []
        for against, ref in (("PyTorch fp32", reference), ("x86", x86_s)):
            quality = judge_quantized(ref, arm_s, gate, "int8", "digits held-out", labels)
            if not quality.passed:
                problems.append(
                    f"{p.case.id} on arm64 {runtime}: output {names[0]} held-out accuracy {quality.accuracy:.1%} vs "
                    f"{against} {quality.reference_accuracy:.1%} (max drop {gate.max_accuracy_drop} points)"
                )
        top1 = top1_agreement([s[names[0]] for s in x86_s], [s[names[0]] for s in arm_s])
        if top1 < gate.min_top1_agreement:
            problems.append(f"{p.case.id} on arm64 {runtime}: output {names[0]} top-1 agrees with x86 on {top1:.1%} "
                            f"(min {gate.min_top1_agreement:.0%})")  # fmt: skip
        accuracy = float(np.mean(np.concatenate([s[names[0]] for s in arm_s]).argmax(-1) == labels))
        row = Row(p.case.id, runtime, f"outputs, accuracy {accuracy:.1%}", _max_diff(arm_s, x86_s),
                  _max_diff(arm_s, reference), None, f"top-1 {top1:.1%}", count, not problems)  # fmt: skip
        return Verdict(row, problems)


class SpikingStream:
    """A trained spiking LMUFormer streamed frame by frame over held-out digit sequences: its spike trains must
    equal PyTorch's (a first flip only within the tolerance of the threshold) and the prediction after every
    frame before a flip must be within the manifest's tolerance."""

    job_kind = "stream"

    def prepare(self, case: Case, fixtures: Callable[[str], Any], work: Path) -> Prepared:
        lmu = fixtures("lmu")
        bundle = lmu.path(case.model, case.fmt)
        manifest = read_bundle(bundle).manifest
        whole = prepare_model(case.model, lmu.weights(case.model))
        sequences = load_dataset("digits", (1, 16, 4)).x_test[:STREAM_SEQUENCES]
        reference = [reference_steps(whole, s[None]) for s in sequences]
        inputs = work / f"{case.id.replace('/', '-')}-in.npz"
        np.savez(inputs, sequences=sequences)
        job = {"id": case.id, "kind": "stream", "bundle": str(bundle), "inputs": str(inputs)}
        return Prepared(case, bundle, job, reference, {"tolerance": manifest.validation.tolerance,
                                                       "threshold": lif_threshold(whole.module)})  # fmt: skip

    def judge(self, p: Prepared, arm, x86, runtime: str) -> Verdict:
        tol, threshold = p.extra["tolerance"], p.extra["threshold"]
        problems, worst_x86, worst_torch, same_as_x86, fired = [], 0.0, 0.0, 0, 0.0
        for i, (want, want_spikes, potentials) in enumerate(p.reference):
            got, got_spikes = arm["logits"][i], arm["spikes"][i]
            fired += float(got_spikes.mean())
            agreement = compare_spikes(want_spikes, got_spikes, potentials, threshold, tol.atol)
            if not agreement.explained:
                problems.append(f"{p.case.id} on arm64 {runtime}: output spikes of sequence {i} flip away from the "
                                f"threshold at frame {agreement.compared_steps}")  # fmt: skip
            steps = agreement.compared_steps
            if steps:
                result = compare([{"logits": r} for r in want[:steps]], [{"logits": r} for r in got[:steps]], tol)
                problems += _failures(result, f"{p.case.id} sequence {i}", runtime, "PyTorch")
                worst_torch = max(worst_torch, result.max_abs_err)
            same = bool(np.array_equal(got_spikes, x86["spikes"][i]))
            same_as_x86 += same
            if same:  # identical spikes: the logits of every frame are comparable
                worst_x86 = max(worst_x86, float(np.abs(got - x86["logits"][i]).max()))
        if fired / len(p.reference) <= 0.005:
            problems.append(f"{p.case.id} on arm64 {runtime}: output spikes almost never fire ({fired:.4f}): "
                            "the comparison would prove nothing")  # fmt: skip
        agreement = f"spike trains identical {same_as_x86}/{len(p.reference)}"
        row = Row(p.case.id, runtime, "spike trains + per-frame logits", worst_x86, worst_torch, None, agreement,
                  len(p.reference), not problems)  # fmt: skip
        return Verdict(row, problems)


class GreedyTokens:
    """The trained tiny encoder-decoder's greedy tokens for several prompts: identical to PyTorch's and x86's."""

    job_kind = "generate"

    def prepare(self, case: Case, fixtures: Callable[[str], Any], work: Path) -> Prepared:
        seq2seq = fixtures("seq2seq")
        bundle = seq2seq.path(case.fmt)
        runner = TorchSeq2SeqRunner(prepare_model(case.model, seq2seq.weights()).module)
        new_tokens = runner.max_target - 1
        reference = [generate(runner, prompt, new_tokens).tokens for prompt in PROMPTS]
        job = {"id": case.id, "kind": "generate", "bundle": str(bundle), "prompts": PROMPTS,
               "max_new_tokens": new_tokens}  # fmt: skip
        return Prepared(case, bundle, job, reference)

    def judge(self, p: Prepared, arm, x86, runtime: str) -> Verdict:
        problems, same_as_x86 = [], 0
        for i, (prompt, want) in enumerate(zip(PROMPTS, p.reference, strict=True)):
            got, other = tuple(arm[f"tokens/{i}"].tolist()), tuple(x86[f"tokens/{i}"].tolist())
            same_as_x86 += got == other
            for against, tokens in (("PyTorch", want), ("x86", other)):
                if got != tuple(tokens):
                    problems.append(f"{p.case.id} on arm64 {runtime}: output tokens for {prompt!r} are {list(got)}, "
                                    f"{against} gives {list(tokens)}")  # fmt: skip
        row = Row(p.case.id, runtime, "greedy tokens", None, None, None,
                  f"token sequences identical {same_as_x86}/{len(PROMPTS)}", len(PROMPTS), not problems)  # fmt: skip
        return Verdict(row, problems)


CHECKS: dict[str, Check] = {"float": FloatGraph(), "int8": Int8Graph(), "stream": SpikingStream(),
                            "tokens": GreedyTokens()}  # fmt: skip
CASES = (
    [Case(m, f, "fp32", "float") for m in ("vit_tiny", "vit_digits", "cnn_small", "tinyvit_5m") for f in FORMATS]
    + [Case(m, f, "int8", "int8") for m in ("cnn_small", "vit_digits") for f in FORMATS]
    + [Case("lmuformer_spiking", f, "stream", "stream") for f in FORMATS]
    + [Case("seq2seq_tiny", f, "fp32", "tokens") for f in FORMATS]
)


@dataclass
class Runs:
    prepared: dict[str, Prepared]
    arm: dict[str, Any]  # the checker's result: machine facts and per-job status
    x86: dict[str, Any]
    outputs: dict[str, dict[str, Path]]  # machine -> case id -> the job's outputs (.npz)


@pytest.fixture(scope="module")
def runs(arm64_env, request, tmp_path_factory) -> Runs:
    work = tmp_path_factory.mktemp("arm64-jobs")
    # only the bundles of the selected tests (`-k vit_tiny`): each costs an export, some a training
    selected = {item.callspec.params["case"].id for item in request.session.items
                if hasattr(item, "callspec") and "case" in item.callspec.params}  # fmt: skip
    prepared = {}
    for case in (c for c in CASES if c.id in selected):
        start = time.monotonic()
        prepared[case.id] = CHECKS[case.check].prepare(case, request.getfixturevalue, work)
        key = f"x86 export + PyTorch reference, {case.check} (s)"
        REPORT.facts[key] = round(REPORT.facts.get(key, 0.0) + time.monotonic() - start, 1)
    outputs = {m: {i: work / f"{i.replace('/', '-')}-{m}.npz" for i in prepared} for m in ("arm64", "x86")}
    for machine, paths in outputs.items():
        jobs = [{**p.job, "outputs": str(paths[i])} for i, p in prepared.items()]
        (work / f"jobs-{machine}.json").write_text(json.dumps(jobs))
    start = time.monotonic()
    x86 = checker.run_jobs(json.loads((work / "jobs-x86.json").read_text()))
    REPORT.facts["x86 runtimes, every bundle (s)"] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    proc = arm64_env.run(str(CHECKER), str(work / "jobs-arm64.json"), str(work / "result-arm64.json"),
                         timeout=ARM64_TIMEOUT)  # fmt: skip
    REPORT.facts["arm64 runtimes under emulation, every bundle, one process (s)"] = round(time.monotonic() - start, 1)
    assert proc.returncode == 0, f"the arm64 checker exited with {proc.returncode}: {proc.stderr[-2000:]}"
    arm = json.loads((work / "result-arm64.json").read_text())
    REPORT.facts["arm64 machine"] = arm["machine"]
    return Runs(prepared, arm, x86, outputs)


def _outputs(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_arm64_process_is_an_aarch64_device_without_torch(runs):
    machine = runs.arm["machine"]
    assert machine["machine"] == "aarch64" and machine["numpy"] == "1.26.4"
    assert not machine["torch_importable"]
    # a Cortex-A76: NEON (asimd, bit 1) and dot product (asimddp, bit 20), no SVE (bit 22)
    hwcap = int(machine["hwcap"], 16)
    assert hwcap & (1 << 1) and hwcap & (1 << 20) and not hwcap & (1 << 22), machine["hwcap"]
    assert machine["onnxruntime"] == "1.32.0" and machine["ai-edge-litert"] == "2.3.0"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bundle_agrees_on_arm64(runs, case):
    p = runs.prepared[case.id]
    package = RUNTIME_PACKAGES[case.fmt]
    runtime = f"{package} {runs.arm['machine'].get(package)}"
    for machine, result in (("arm64", runs.arm), ("x86", runs.x86)):
        status = result["jobs"][case.id]
        assert status["ok"], f"{case.id} ({p.bundle}) failed on {machine} {runtime}: {status['error']}"
    arm, x86 = (_outputs(runs.outputs[m][case.id]) for m in ("arm64", "x86"))
    verdict = CHECKS[case.check].judge(p, arm, x86, runtime)
    REPORT.add(verdict.row)
    assert not verdict.problems, "\n".join(verdict.problems)
