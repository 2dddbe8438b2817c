"""`edgekit serve PLANDIR --report`: the run report written when the server stops counts the requests it served
and holds each worker's energy over the server's life where the worker has a meter (a fake INA226 here)."""

from __future__ import annotations

import json
import signal

import grpc
import numpy as np
import pytest

from edgekit.serving.grpc_codec import proto
from edgekit.serving.local import start_local_server
from edgekit.splitter.local import start_local_worker
from tests.helpers.cli import assert_user_error, invoke
from tests.splitter.conftest import addresses
from tests.splitter.test_node_energy import NO_METERS, fake_ina226

REQUESTS = 6


def test_a_plans_report_counts_its_requests_and_the_metered_nodes_energy(split_plan, plan_workers, tmp_path):
    device = next(s.device for s in split_plan.shards if s.format == "onnx")  # a fresh worker: ONNX deploys fastest
    hwmon = fake_ina226(tmp_path, 1_500_000)  # 1.5 W
    metered = start_local_worker(device, tmp_path / "metered", "--energy", "hwmon",
                                 env={**NO_METERS, "EDGEKIT_HWMON_ROOT": str(hwmon)})  # fmt: skip
    report = tmp_path / "run.json"
    try:
        spec = ",".join(f"{k}={v}" for k, v in {**addresses(plan_workers), device: metered.address}.items())
        with start_local_server(split_plan.root, "--workers", spec, "--timeout", "30", "--report", str(report)) as s:
            pb, pb_grpc = proto()
            request = pb.ModelInferRequest(model_name=s.model)
            request.inputs.add(name=split_plan.input["name"], datatype="FP32", shape=split_plan.input["shape"])
            request.raw_input_contents.append(np.zeros(split_plan.input["shape"], np.float32).tobytes())
            with grpc.insecure_channel(s.grpc_address) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                for _ in range(REQUESTS):
                    stub.ModelInfer(request, timeout=30)
        data = json.loads(report.read_text())
    finally:
        metered.stop(signal.SIGKILL)
    assert (data["requests"], data["answered"], data["errors"]) == (REQUESTS, REQUESTS, 0)
    nodes = {n["worker"]: n for n in data["nodes"]}
    assert sum(n["answered"] for n in nodes.values()) == REQUESTS * len(split_plan.shards)
    energy = nodes[device]["energy"]
    assert energy["meter"] == "hwmon" and energy["seconds"] > 0
    assert energy["joules"] == pytest.approx(1.5 * energy["seconds"], rel=0.02)
    assert energy["mean_watts"] == pytest.approx(1.5, rel=0.02)
    for name, node in nodes.items():
        if name != device:  # the shared workers run with --energy auto: a meter this machine has, or a reason
            assert node["energy"]["joules"] is not None or node["energy"]["reason"].startswith("no meter here")


def test_report_is_refused_for_a_bundle(bundle_path, tmp_path):
    result = invoke("serve", str(bundle_path), "--report", str(tmp_path / "run.json"))
    assert_user_error(result, "--report is a split plan's run report")
