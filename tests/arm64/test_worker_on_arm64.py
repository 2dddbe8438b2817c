"""An `edgekit worker` on the emulated arm64 CPU, in its own network namespace, serves split shards to the
coordinator here: the fused answer must equal the all-x86 answer (the same plan served by x86 workers).

Every namespace, veth pair and address is made here and removed after the test (also when it fails):
10.235.<i>.0/24 (the netns tests use 10.231 and 10.233, so they may run at the same time); nothing else is touched.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.bundle import read_bundle
from edgekit.data import load_dataset
from edgekit.exporters.pipeline import export
from edgekit.splitter import SplitCoordinator
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.local import LocalWorker, start_local_worker
from edgekit.splitter.remote_verify import DeviceRunner
from tests.helpers.netns import namespaces

pytestmark = pytest.mark.arm64

SUBNET = "10.235"
FORMATS = ("tflite", "onnx")  # one shard per arm64 runtime; ExecuTorch has no arm64 runtime here (README)
SAMPLES = 12
TIMEOUT = 60.0  # per coordinator call: an emulated inference is ~100x slower than a native one
# the namespaces are this test's own private network: no certificates, and nothing to announce over mDNS
WORKER_FLAGS = ("--threads", "1", "--insecure", "--no-announce")
READY_SECONDS = 180.0  # an emulated worker imports grpc and numpy before it listens


@pytest.fixture(scope="module")
def arm64_plan(tmp_path_factory):
    """A tiny ViT split in two: a LiteRT shard and an ONNX Runtime shard."""
    from edgekit.splitter.edvit import SplitSettings, plan_split

    devices = [DeviceSpec(f"pi{i}", None, 50_000_000, 5.0, fmt) for i, fmt in enumerate(FORMATS)]
    settings = SplitSettings(epochs=4, finetune_epochs=1, fusion_epochs=15, samples=4)
    root = tmp_path_factory.mktemp("arm64-split") / "plan"
    return plan_split("vit_digits", devices, root, config={"depth": 2}, settings=settings)


def _answers(plan, addresses: dict[str, str], x: np.ndarray) -> tuple[np.ndarray, dict]:
    with SplitCoordinator(plan, addresses, timeout=TIMEOUT) as coordinator:
        health = coordinator.health()
        assert sorted(coordinator.deploy()) == sorted(s.name for s in plan.shards)
        logits = np.concatenate([coordinator.infer(x[i : i + 1]).logits for i in range(len(x))])
    return logits, health


def _stop(workers: list[LocalWorker]) -> None:
    for w in workers:
        w.stop()


def test_arm64_workers_in_namespaces_give_the_all_x86_answer(arm64_env, arm64_plan, tmp_path):
    from tests.arm64.report import REPORT, Row

    split = load_dataset("digits", tuple(arm64_plan.input["shape"]))
    x = split.x_test[:SAMPLES]
    devices = [d.name for d in arm64_plan.devices]
    x86_workers = []
    try:
        for device in devices:
            x86_workers.append(start_local_worker(device, tmp_path / f"x86-{device}", "--threads", "1"))
        want, _ = _answers(arm64_plan, {w.name: w.address for w in x86_workers}, x)
    finally:
        _stop(x86_workers)
    with namespaces(len(devices), subnet=SUBNET, tag="eka") as hosts:
        arm_workers = []
        try:
            for device, (ns, _, address) in zip(devices, hosts, strict=True):
                arm_workers.append(
                    start_local_worker(device, tmp_path / f"arm64-{device}", *WORKER_FLAGS,
                                       python=str(arm64_env.shim), host=address, port=50051,
                                       prefix=("ip", "netns", "exec", ns), ready_seconds=READY_SECONDS)
                )  # fmt: skip
            addresses = {w.name: w.address for w in arm_workers}
            assert all(a.startswith(f"{SUBNET}.") for a in addresses.values())
            got, health = _answers(arm64_plan, addresses, x)
            # `edgekit export --verify-on`: a new export's verification, run again by the emulated device
            device = arm_workers[0]
            on_device = export("vit_digits", config={"depth": 1}, format="tflite", out_dir=tmp_path / "verified",
                               samples=4, verify_on=[DeviceRunner(device.name, device.address)])  # fmt: skip
        finally:
            _stop(arm_workers)
    (record,) = on_device.manifest.verified_on
    assert record.machine == "aarch64" and record.validation.passed, record
    assert record.validation.samples == on_device.validation.samples
    # the workers were emulated arm64 processes: they can load LiteRT and ONNX bundles, not ExecuTorch (no torch)
    for reply in health.values():
        assert set(reply.formats) == {"onnx", "tflite"}, reply.formats
    tolerance = max((read_bundle(arm64_plan.verify_shard(s)).manifest.validation.tolerance
                     for s in arm64_plan.shards), key=lambda t: t.atol + t.rtol)  # fmt: skip
    allowed = tolerance.atol + tolerance.rtol * float(np.abs(want).max())
    diff = float(np.abs(got - want).max())
    agree = float(np.mean(got.argmax(-1) == want.argmax(-1)))
    REPORT.add(Row("split vit_digits (tflite + onnx shards)", "edgekit worker x2, own netns", "fused logits", diff,
                   None, allowed, f"predictions identical {agree:.0%}", SAMPLES,
                   diff <= allowed and agree == 1.0))  # fmt: skip
    assert np.array_equal(got.argmax(-1), want.argmax(-1)), "arm64 split predictions differ from the all-x86 ones"
    assert diff <= allowed, f"split logits: max |arm64 - x86| {diff:.3g} > allowed {allowed:.3g}"
