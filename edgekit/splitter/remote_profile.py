"""``edgekit profile BUNDLE --on DEVICE``: the same profiler, run by a worker on the device itself.

The bundle is verified here, deployed to the worker like a shard (pinned by the sha256 of its manifest, sent
only when the worker does not hold that digest yet), and profiled there with the worker's runtime and energy
meters. The report comes back as JSON text and becomes the same ``ProfileReport`` a local profile gives,
naming the device and the worker's pid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgekit.bundle import read_bundle
from edgekit.errors import ConfigError, WorkerError
from edgekit.fleet.auth import ClientAuth
from edgekit.profiling.profiler import ProfileReport
from edgekit.splitter.coordinator import failure_reason
from edgekit.splitter.deploy import DEPLOY_SECONDS, bundle_chunks
from edgekit.splitter.plan import bundle_digest
from edgekit.splitter.wire import proto

MESSAGE_BYTES = 64 << 20  # a report holds every sample: larger than an inference reply


@dataclass(frozen=True)
class ProfileSettings:
    runs: int = 50
    warmup: int = 5
    duration: float | None = None
    threads: int | None = None
    energy: str = "auto"
    idle_seconds: float = 1.0


def parse_target(text: str) -> tuple[str, str | None]:
    """``NAME=HOST:PORT`` -> (name, address); ``NAME`` -> (name, None): found by discovery."""
    name, sep, address = text.partition("=")
    if not name or (sep and ":" not in address):
        raise ConfigError(f"--on takes NAME=HOST:PORT or a discovered NAME; cannot read {text!r}")
    return name, address if sep else None


def deploy_pinned(stub, fmt: str, path: Path, shard: str, digest: str, label: str, timeout: float):
    """Deploy a verified bundle to a worker under ``shard``, unless it already holds that digest; its health."""
    pb, _ = proto()
    health = stub.Health(pb.HealthRequest(), timeout=timeout)
    if fmt not in health.formats:
        raise WorkerError(
            label, f"cannot run {fmt} bundles (it has runtimes for {', '.join(health.formats) or 'nothing'})"
        )
    if {s.shard: s.digest for s in health.shards}.get(shard) != digest:
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        stub.Deploy(bundle_chunks(shard, digest, path), timeout=DEPLOY_SECONDS + size / (1 << 20))
    return health


def profile_on(
    bundle_path: str | Path,
    device: str,
    address: str,
    auth: ClientAuth | None = None,
    settings: ProfileSettings | None = None,
    timeout: float = 10.0,
) -> ProfileReport:
    pb, pb_grpc = proto()
    import grpc

    auth, settings = auth or ClientAuth(), settings or ProfileSettings()
    path = Path(bundle_path)
    bundle = read_bundle(path)  # a damaged bundle is refused here, before anything is sent
    digest = bundle_digest(path)
    shard = f"profile-{digest[:16]}"
    label = f"{device} ({address})"
    problem = auth.local_problem()
    if problem:
        raise WorkerError(label, f"cannot authenticate: {problem}")
    options = [("grpc.max_receive_message_length", MESSAGE_BYTES), ("grpc.max_send_message_length", 16 << 20)]
    # the worker times every run, idles for the meter's baseline and imports its runtime: minutes, bounded
    budget = timeout + DEPLOY_SECONDS + (settings.duration or 0) + settings.idle_seconds + settings.runs * 1.0
    step = "asking for its health"
    try:
        with auth.channel(address, device, options) as channel:
            stub = pb_grpc.ShardWorkerStub(channel)
            step = "deploying the bundle"
            deploy_pinned(stub, bundle.format, path, shard, digest, label, timeout)
            step = "profiling"
            request = pb.ProfileRequest(
                shard=shard, runs=settings.runs, warmup=settings.warmup, energy=settings.energy,
                idle_seconds=settings.idle_seconds, threads=settings.threads or 0, duration=settings.duration or 0,
            )  # fmt: skip
            reply = stub.Profile(request, timeout=budget)
    except grpc.RpcError as exc:
        what, _ = failure_reason(exc, auth, address, device, timeout)
        raise WorkerError(label, f"{what} while {step}") from None
    try:
        report = ProfileReport.from_json(json.loads(reply.report_json))
    except ValueError as exc:
        raise WorkerError(label, f"sent a report that is not JSON ({exc})") from None
    return report


def profile_device_on(
    device: str,
    address: str,
    auth: ClientAuth | None = None,
    model: str = "vit_tiny",
    config: dict | None = None,
    energy: str = "auto",
    timeout: float = 600.0,
) -> dict:
    """The device.json a worker measured of its own device (``edgekit profile-device --on``), as written."""
    pb, pb_grpc = proto()
    import grpc

    auth = auth or ClientAuth()
    label = f"{device} ({address})"
    problem = auth.local_problem()
    if problem:
        raise WorkerError(label, f"cannot authenticate: {problem}")
    request = pb.DeviceProfileRequest(model=model, config_json=json.dumps(config or {}), energy=energy)
    try:
        with auth.channel(address, device, []) as channel:
            reply = pb_grpc.ShardWorkerStub(channel).ProfileDevice(request, timeout=timeout)
    except grpc.RpcError as exc:
        what, _ = failure_reason(exc, auth, address, device, timeout)
        raise WorkerError(label, f"{what} while measuring the device") from None
    try:
        data = json.loads(reply.report_json)
    except ValueError as exc:
        raise WorkerError(label, f"sent a device profile that is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != "edgekit.device/1":
        raise WorkerError(label, "sent something that is not a device profile")
    return data
