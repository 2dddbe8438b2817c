from __future__ import annotations

import json

import pytest

from edgekit.errors import ConfigError, UnknownNameError
from edgekit.splitter.devices import load_devices, parse_size


def _write(tmp_path, text):
    path = tmp_path / "devices.yaml"
    path.write_text(text)
    return path


def test_declared_and_profiled_devices(tmp_path):
    (tmp_path / "pi.json").write_text(
        json.dumps({"schema": "edgekit.device/1", "matmul_gflops": 12.5, "memory_available_bytes": 3_000_000_000})
    )
    devices = load_devices(
        _write(
            tmp_path,
            """
devices:
  - {name: phone, address: "10.0.0.2:50051", memory: 512MB, gflops: 40, target: android}
  - {name: pi, address: "10.0.0.3:50051", profile: pi.json, target: rpi5, link_mbps: 100}
  - {name: box, memory_mb: 64, gflops: 100}
""",
        )
    )
    phone, pi, box = devices
    assert (phone.memory_bytes, phone.gflops, phone.format, phone.source) == (512_000_000, 40.0, "pte", "declared")
    assert (pi.memory_bytes, pi.gflops, pi.format, pi.link_mbps, pi.source) == (
        3_000_000_000,
        12.5,
        "tflite",
        100.0,
        "pi.json",
    )
    assert (box.memory_bytes, box.format, box.address) == (64_000_000, "onnx", None)


@pytest.mark.parametrize(
    "text, error, match",
    [
        ("devices: []", ConfigError, "non-empty list"),
        ("devices:\n  - {name: a, memory: 1GB}", ConfigError, "gflops"),
        ("devices:\n  - {name: a, gflops: 3}", ConfigError, "give memory"),
        ("devices:\n  - {name: a, memory: lots, gflops: 3}", ConfigError, "cannot read 'lots'"),
        ("devices:\n  - {name: a, memory: 1GB, gflops: 3, adress: 'x:1'}", ConfigError, "unknown key 'adress'"),
        ("devices:\n  - {name: a, memory: 1GB, gflops: 3, address: nowhere}", ConfigError, "not host:port"),
        (
            "devices:\n  - {name: a, memory: 1GB, gflops: 3}\n  - {name: a, memory: 1GB, gflops: 3}",
            ConfigError,
            "twice",
        ),
        ("devices:\n  - {name: a, memory: 1GB, gflops: 3, target: raspberry}", UnknownNameError, "raspberry"),
        ("devices:\n  - {name: a, memory: 1GB, gflops: 3, profile: missing.json}", ConfigError, "cannot read profile"),
        ("devices: [", ConfigError, "not valid YAML"),
    ],
)
def test_bad_devices_files_say_what_is_wrong(tmp_path, text, error, match):
    with pytest.raises(error, match=match):
        load_devices(_write(tmp_path, text))


def test_sizes():
    assert parse_size("1.5GiB", "m") == int(1.5 * 2**30)
    assert parse_size("256 kb", "m") == 256_000
    assert parse_size(1234, "m") == 1234
    with pytest.raises(ConfigError):
        parse_size(True, "m")


def test_emulate_is_parsed_typed_and_round_trips_through_plan_json(tmp_path):
    from edgekit.splitter.devices import DeviceSpec, EmulateSpec

    pi, plain = load_devices(
        _write(
            tmp_path,
            """
devices:
  - {name: pi, memory: 512MB, gflops: 4, emulate: {cpus: 0.4, link_mbps: 100, memory: 512MB}}
  - {name: box, memory: 1GB, gflops: 4}
""",
        )
    )
    assert pi.emulate == EmulateSpec(cpus=0.4, link_mbps=100.0, memory_bytes=512_000_000)
    assert pi.link_mbps == 100.0  # the emulated link is the estimate's link
    assert plain.emulate is None and "emulate" not in plain.to_json()
    assert DeviceSpec.from_json(json.loads(json.dumps(pi.to_json()))) == pi


@pytest.mark.parametrize(
    "emulate, message",
    [
        ("{cpus: 0.4, link_mbps: 100}", "give memory"),
        ("{cpus: 0, link_mbps: 100, memory: 512MB}", "cpus must be a positive number"),
        ("{cpus: 0.4, link_mbps: fast, memory: 512MB}", "link_mbps must be a positive number"),
        ("{cpus: 0.4, link_mbps: 100, memory: 512MB, disk: 1GB}", "unknown key 'disk'"),
        ("{cpus: 0.4, link_mbps: 100, memory: 1MB}", "too small"),
        ("0.4", "expected"),
    ],
)
def test_emulate_refuses_bad_entries(tmp_path, emulate, message):
    path = _write(tmp_path, f"devices:\n  - {{name: pi, memory: 512MB, gflops: 4, emulate: {emulate}}}\n")
    with pytest.raises(ConfigError, match=message):
        load_devices(path)
