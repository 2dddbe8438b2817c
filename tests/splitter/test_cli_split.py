"""`edgekit split` end to end through the CLI, and every user error as one line with exit code 2."""

from __future__ import annotations

import json

import pytest

from tests.helpers.cli import assert_user_error, invoke

DEVICES = """
devices:
  - {name: pi-a, address: "127.0.0.1:50101", memory: 64MB, gflops: 8, format: onnx}
  - {name: pi-b, address: "127.0.0.1:50102", memory: 64MB, gflops: 8, target: linux-x86_64}
"""


@pytest.fixture
def devices_file(tmp_path):
    path = tmp_path / "devices.yaml"
    path.write_text(DEVICES)
    return path


def test_split_command_writes_a_plan(devices_file, tmp_path):
    result = invoke(
        "split", "vit_digits", "--devices", str(devices_file), "-o", str(tmp_path / "plan"), "--epochs", "1",
        "--finetune-epochs", "1", "--partition", "contiguous", "-s", "depth=1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert [s["classes"] for s in plan["shards"]] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert {s["device"] for s in plan["shards"]} == {"pi-a", "pi-b"}
    assert plan["devices"][0]["address"] == "127.0.0.1:50101"
    assert "fused split" in result.output and "pi-a" in result.output


@pytest.mark.parametrize(
    "args, devices, message",
    [
        (["cnn_small", "-s", "widths=[4,8]"], DEVICES, "model for edgekit split='cnn_small' is not supported"),
        (["vit_digits"], DEVICES.replace("64MB", "1kB", 1), "device pi-a: even the smallest sub-model"),
        (["vit_digits", "--partition", "balance"], DEVICES, "Did you mean 'balanced'"),
        (["vit_digits", "--keep", "1.5"], DEVICES, "--keep"),
        (["vit_digits", "--latency-ms", "0"], DEVICES, "--latency-ms"),
        (["vit_digits", "--latency-ms", "1e-9"], DEVICES, "FLOPs budget"),
        (["vit_digits", "--strategy", "layerwise"], DEVICES, "unknown split strategy 'layerwise'"),
        (["vit_digits"], "devices: 3", "non-empty list"),
    ],
)
def test_split_errors_are_one_line(tmp_path, args, devices, message):
    path = tmp_path / "devices.yaml"
    path.write_text(devices)
    settings = [] if "-s" in args else ["-s", "depth=1"]
    result = invoke("split", *args, "--devices", str(path), "-o", str(tmp_path / "plan"), "--epochs", "1", *settings)
    assert_user_error(result, message)
    assert not (tmp_path / "plan").exists()


def test_infer_split_errors_are_one_line(tmp_path):
    assert_user_error(invoke("infer-split", str(tmp_path), "--eval", "digits"), "no split plan")
    assert_user_error(invoke("infer-split", str(tmp_path)), "--input FILE.npy or --eval")


def test_split_data_from_an_npz_file(tmp_path):
    import numpy as np

    from edgekit.data import load_dataset
    from edgekit.errors import InputError

    digits = load_dataset("digits", (1, 1, 8, 8))
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=digits.x_train[:200], y_train=digits.y_train[:200], x_test=digits.x_test[:50],
             y_test=digits.y_test[:50])  # fmt: skip
    mine = load_dataset(str(path), (1, 1, 8, 8))
    assert mine.x_train.shape == (200, 1, 8, 8) and mine.num_classes == 10
    np.testing.assert_array_equal(mine.x_test, digits.x_test[:50])
    with pytest.raises(InputError, match="do not fit the model's input"):
        load_dataset(str(path), (1, 3, 8, 8))
    np.savez(tmp_path / "half.npz", x_train=digits.x_train)
    with pytest.raises(InputError, match="lacks y_train"):
        load_dataset(str(tmp_path / "half.npz"), (1, 1, 8, 8))
    with pytest.raises(InputError, match="cannot read dataset"):
        load_dataset(str(tmp_path / "absent.npz"), (1, 1, 8, 8))


def test_split_tables_fit_in_80_columns(split_plan):
    from edgekit.cli.split import plan_table, worker_table
    from tests.helpers.render import assert_fits, rendered

    shards = tuple(s.name for s in split_plan.shards)
    assert_fits(rendered(plan_table(split_plan)), whole=(*shards, *(s.device for s in split_plan.shards)))
    rows = [{"worker": "dev0@127.0.0.1:50101", "shards": list(shards), "compute_ms": 1.234, "round_trip_ms": 2.5,
             "overhead_ms": 1.27, "bytes_sent": 1024.0, "bytes_received": 256.0}]  # fmt: skip
    assert_fits(rendered(worker_table(rows, "per worker (medians)")), whole=("dev0@127.0.0.1:50101",))


REPLICA_DEVICES = """
devices:
  - {name: pi-a, memory: 64MB, gflops: 8, format: onnx, runtimes: [tflite]}
  - {name: pi-b, memory: 64MB, gflops: 8, format: tflite}
"""


def test_split_places_replicas_and_names_the_shards_it_could_not_replicate(tmp_path):
    from edgekit.splitter import load_plan

    path = tmp_path / "devices.yaml"
    path.write_text(REPLICA_DEVICES)
    result = invoke(
        "split", "vit_digits", "--devices", str(path), "-o", str(tmp_path / "plan"), "--epochs", "1",
        "--finetune-epochs", "1", "--partition", "contiguous", "-s", "depth=1", "--replicas", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = load_plan(tmp_path / "plan")
    by_device = {s.device: s for s in plan.shards}
    assert by_device["pi-b"].holders == ("pi-b", "pi-a")  # pi-a also runs tflite bundles
    assert by_device["pi-a"].holders == ("pi-a",)  # pi-b cannot run onnx
    short = plan.report["replicas"]["short"]
    assert list(short) == [by_device["pi-a"].name] and "no other device can run onnx" in short[by_device["pi-a"].name]
    assert "not fully replicated" in result.output and "no other device can run onnx" in result.output
