"""``edgekit worker``: a gRPC server that holds shard bundles and runs them.

It needs only the runtime install (numpy, a runtime, grpcio) -- no torch. A shard arrives as a stream
of file chunks into a staging directory and is accepted only if the sha256 of its ``edgekit.json`` is
the digest the coordinator announced, every file matches the manifest's sha256, and the bundle loads
with its runtime; then it replaces any previous copy under ``WORKDIR/shards/NAME``. Deployed shards are
loaded again when a worker restarts -- after it starts listening: until they are loaded the standard health
service (``grpc.health.v1``) says NOT_SERVING and the worker's own health reply says ``loading``. Requests are
bounded (message size, bundle bytes / files / depth, tensor bytes, calls at once) and checked field by field; a
bad one gets INVALID_ARGUMENT with a one-line reason, never a crash. Callers are authenticated by the fleet's
mutual TLS and/or a bearer token (``edgekit.fleet``); a drain (SIGTERM) refuses new calls, lets those in flight
finish within a grace period and reports NOT_SERVING meanwhile. Started with an energy meter (``energy``: auto, a
meter name or none), the worker keeps it running as a cumulative total that ``Energy`` returns: a coordinator
reads it at a run's start and end for the node's joules over the run.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import platform
import shutil
import socket
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.bundle import MANIFEST_NAME, Bundle, read_bundle
from edgekit.errors import BundleError, ConfigError, EdgekitError, InputError, MissingDependencyError
from edgekit.fleet.auth import SERVER_KEEPALIVE, ClientAuth, ServerAuth
from edgekit.splitter.plan import bundle_digest
from edgekit.splitter.shard_run import run_shard
from edgekit.splitter.upload import UploadLimits, receive, remove_leftovers, staging_dir
from edgekit.splitter.wire import encode, proto
from edgekit.toolchain import edgekit_version

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_BUNDLE_BYTES = UploadLimits.max_bytes
MAX_CALLS = 16
MAX_PROFILE_RUNS = 100_000
SERVICE = "edgekit.split.v1.ShardWorker"
_OPEN = frozenset({f"/{SERVICE}/Health"})  # health is answered to anyone who can connect
_RECORD = "shard.json"


@dataclass
class LoadedShard:
    name: str
    digest: str
    format: str
    path: Path
    runtime: Any
    lock: threading.Lock


class ShardStore:
    """The shards this worker holds, on disk under ``workdir/shards`` and loaded in memory."""

    def __init__(self, workdir: Path, threads: int | None = None):
        self.workdir = workdir
        self.threads = threads
        self.shards: dict[str, LoadedShard] = {}
        self._lock = threading.Lock()
        self.ready = threading.Event()  # set once the stored shards are loaded
        (workdir / "shards").mkdir(parents=True, exist_ok=True)
        removed = remove_leftovers(workdir)
        if removed:
            log.info("removed %d unfinished upload(s) left by an earlier run", removed)

    def restore(self) -> None:
        """Load the shards a previous run accepted (each re-verified; a damaged one is dropped)."""
        for record in sorted((self.workdir / "shards").glob(f"*/{_RECORD}")):
            try:
                meta = json.loads(record.read_text())
                self._load(meta["shard"], meta["digest"], record.parent)
            except (EdgekitError, OSError, KeyError, ValueError) as exc:
                log.warning("dropping stored shard %s: %s", record.parent.name, exc)
                shutil.rmtree(record.parent, ignore_errors=True)
        self.ready.set()

    def accept(self, shard: str, digest: str, staged: Path) -> LoadedShard:
        if bundle_digest(staged) != digest:
            raise BundleError(
                f"shard {shard}: the uploaded manifest does not match digest {digest[:12]}... (tampered?)"
            )
        bundle = read_bundle(staged)  # every file's sha256 against the manifest
        received = {str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()}
        extra = received - set(bundle.manifest.files) - {MANIFEST_NAME}
        if extra:
            raise BundleError(f"shard {shard}: files not listed in the manifest were uploaded: {sorted(extra)[0]}")
        final = self.workdir / "shards" / shard
        loaded = self._open(shard, digest, bundle)
        with self._lock:
            old = self.shards.pop(shard, None)
            if old:
                old.runtime.close()
            shutil.rmtree(final, ignore_errors=True)
            # The runtime keeps what it opened across the rename (POSIX), so the bundle is hashed and loaded once.
            staged.rename(final)
            (final / _RECORD).write_text(json.dumps({"shard": shard, "digest": digest}))
            loaded.path = final
            self.shards[shard] = loaded
        return loaded

    def _load(self, shard: str, digest: str, path: Path) -> None:
        if bundle_digest(path) != digest:
            raise BundleError(f"{path}: manifest does not match the recorded digest")
        loaded = self._open(shard, digest, read_bundle(path))
        with self._lock:
            self.shards[shard] = loaded

    def _open(self, shard: str, digest: str, bundle: Bundle) -> LoadedShard:
        from edgekit.runtimes import load

        runtime = load(bundle, threads=self.threads)
        return LoadedShard(shard, digest, bundle.format, bundle.path, runtime, threading.Lock())

    def get(self, shard: str) -> LoadedShard | None:
        with self._lock:
            return self.shards.get(shard)

    def snapshot(self) -> list[LoadedShard]:
        with self._lock:
            return list(self.shards.values())

    def close(self) -> None:
        for s in self.snapshot():
            s.runtime.close()


def available_formats() -> list[str]:
    from edgekit.formats import FORMATS

    return [name for name, fmt in FORMATS.items() if fmt.runtime_class().installed()]


def _servicer_class():
    pb, pb_grpc = proto()
    import grpc

    class ShardWorkerService(pb_grpc.ShardWorkerServicer):
        def __init__(self, store: ShardStore, name: str, limits: UploadLimits, energy=None, no_energy: str = ""):
            self.store = store
            self.name = name
            self.limits = limits
            self.energy = energy  # an EnergyTotalizer, or None (``no_energy`` says why)
            self.no_energy = no_energy
            self.formats = available_formats()
            # Verifying and loading an upload runs here, one at a time, not on the threads that serve inference.
            self.deploys = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="deploy")

        def _info(self, shard: LoadedShard):
            specs = [pb.Tensor(name=s.name, dtype=s.dtype, shape=list(s.shape)) for s in shard.runtime.input_specs]
            return pb.ShardInfo(shard=shard.name, digest=shard.digest, format=shard.format, inputs=specs)

        def Health(self, request, context):  # noqa: N802 (gRPC method names)
            return pb.HealthReply(
                status="ok" if self.store.ready.is_set() else "loading", worker=self.name,
                edgekit_version=edgekit_version(), pid=os.getpid(),
                shards=[self._info(s) for s in self.store.snapshot()], formats=self.formats,
                machine=platform.machine(),
            )  # fmt: skip

        def Deploy(self, request_iterator, context):  # noqa: N802
            start = time.perf_counter()
            try:
                with staging_dir(self.store.workdir) as staging:
                    upload = receive(request_iterator, staging, self.limits)
                    if not context.is_active():
                        raise InputError("the upload was cancelled")
                    task = self.deploys.submit(self.store.accept, upload.shard, upload.digest, staging)
                    loaded = task.result()
            except InputError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except MissingDependencyError as exc:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            except EdgekitError as exc:
                context.abort(grpc.StatusCode.DATA_LOSS, str(exc))
            log.info("accepted shard %s (%s, %d bytes, %d files)", upload.shard, loaded.format, upload.bytes,
                     upload.files)  # fmt: skip
            return pb.DeployReply(shard=self._info(loaded), load_ms=(time.perf_counter() - start) * 1e3)

        def Infer(self, request, context):  # noqa: N802
            shard = self.store.get(request.shard)
            if shard is None and not self.store.ready.is_set():
                context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.name} is still loading its stored shards")
            if shard is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"shard {request.shard!r} is not deployed on {self.name}")
            outputs, compute_ms = run_shard(shard, request.inputs, context)
            return pb.InferReply(outputs=[encode(k, v) for k, v in outputs.items()], compute_ms=compute_ms)

        def Energy(self, request, context):  # noqa: N802
            if self.energy is None:
                return pb.EnergyReply(reason=self.no_energy)
            try:
                total = self.energy.read()
            except (OSError, ValueError) as exc:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"energy meter {self.energy.meter.name}: {exc}")
            return pb.EnergyReply(meter=total.meter, joules=total.joules, seconds=total.seconds,
                                  since_unix_ns=total.since_unix_ns)  # fmt: skip

        def Relay(self, request, context):  # noqa: N802
            from edgekit.splitter.relay import relay

            return relay(self, request, context)

        def Profile(self, request, context):  # noqa: N802
            shard = self.store.get(request.shard)
            if shard is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"bundle {request.shard!r} is not deployed on {self.name}")
            if not 1 <= request.runs <= MAX_PROFILE_RUNS or not 0 <= request.warmup <= MAX_PROFILE_RUNS:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"runs must be 1..{MAX_PROFILE_RUNS}, warmup 0..")
            if not 0 <= request.duration <= 600 or not 0 <= request.idle_seconds <= 60:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "duration must be 0..600 s, idle 0..60 s")
            from edgekit.profiling.profiler import profile

            try:
                with shard.lock:  # alone on the bundle: no inference call timed into its samples
                    report = profile(shard.path, runs=request.runs, warmup=request.warmup,
                                     duration=request.duration or None, threads=request.threads or None,
                                     energy=request.energy or "auto", idle_seconds=request.idle_seconds)  # fmt: skip
            except EdgekitError as exc:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            data = {**report.to_json(), "device": self.name, "pid": os.getpid()}
            return pb.ProfileReply(report_json=json.dumps(data))

        def ProfileDevice(self, request, context):  # noqa: N802
            from edgekit.profiling.device import profile_device

            config = _scalar_config(request.config_json, context)
            try:
                device = profile_device(request.model or "vit_tiny", config, name=self.name,
                                        energy=request.energy or "auto", blocks_optional=True)  # fmt: skip
            except (EdgekitError, TypeError) as exc:  # TypeError: a configuration key the model does not take
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            data = {**device.to_json(), "measured_by": {"worker": self.name, "pid": os.getpid()}}
            return pb.ProfileReply(report_json=json.dumps(data))

    return ShardWorkerService


def _scalar_config(text: str, context) -> dict[str, Any]:
    """A model configuration from the wire: a JSON object of numbers, strings, booleans and lists of them."""
    import grpc

    if not text:
        return {}
    try:
        config = json.loads(text)
    except ValueError as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"config_json is not JSON: {exc}")
    scalar = (int, float, str, bool)

    def plain(v: Any) -> bool:
        return isinstance(v, scalar) or (isinstance(v, list) and all(isinstance(x, scalar) for x in v))

    if not isinstance(config, dict) or not all(plain(v) for v in config.values()):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "config_json must map names to numbers, strings or lists")
    return config


@dataclass
class RunningWorker:
    server: Any
    port: int
    store: ShardStore
    health: Any  # grpc_health.v1 HealthServicer
    gate: Any
    service: Any
    auth: ServerAuth

    def drain(self, grace: float = 10.0) -> bool:
        """NOT_SERVING, refuse new calls, wait up to ``grace`` s for those in flight; True if none was cut."""
        self.health.enter_graceful_shutdown()
        return self.gate.drain(grace)

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace).wait()
        self.service.onward.close()
        self.service.deploys.shutdown(wait=False, cancel_futures=True)
        if self.service.energy:
            self.service.energy.close()
        self.store.close()


def check_port(host: str, port: int) -> None:
    """A clear one-line refusal for a port out of range, in use, or an address this machine does not have.

    gRPC itself would log a C++ line and fail with a generic error, or (out of range) wait forever."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port (0-65535; 0 picks a free one)")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, kind, proto_, _, address = infos[0]
    with socket.socket(family, kind, proto_) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use (another worker?)") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(f"--host {host} is not an address of this machine") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def start_worker(
    host: str = "127.0.0.1",
    port: int = 0,
    workdir: str | Path = "edgekit-worker",
    name: str | None = None,
    threads: int | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_bundle_bytes: int = MAX_BUNDLE_BYTES,
    auth: ServerAuth | None = None,
    max_calls: int = MAX_CALLS,
    limits: UploadLimits | None = None,
    energy: str = "none",
) -> RunningWorker:
    """Start serving (port 0 picks a free port) at once; stored shards load in the background. ``energy``: the
    meter ``Energy`` reports (auto, a meter name or none; a named meter that cannot read raises MeterUnavailable).

    Refuses (ConfigError) a non-loopback ``host`` without authentication unless ``auth.insecure``."""
    _, pb_grpc = proto()
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    auth = auth or ServerAuth()
    warning = auth.check_bind(host)
    if warning:
        log.info("%s", warning)  # the CLI prints it as its one warning line
    check_port(host, port)
    from edgekit.profiling.energy.totalizer import start_totalizer

    totalizer, no_energy = start_totalizer(energy)  # before listening: a named meter that cannot read is refused
    limits = limits or UploadLimits(max_bytes=max_bundle_bytes)
    store = ShardStore(Path(workdir), threads)
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        *SERVER_KEEPALIVE,
    ]
    from edgekit.fleet.gate import make_gate

    gate = make_gate(
        auth, max_calls, _OPEN, frozenset({f"/{SERVICE}/Deploy", f"/{SERVICE}/Profile", f"/{SERVICE}/ProfileDevice"})
    )
    # Threads beyond the bound on calls keep health checks answered while every work call is busy.
    pool = futures.ThreadPoolExecutor(max_workers=max_calls + 2, thread_name_prefix="grpc")
    server = grpc.server(pool, options=options, interceptors=[gate])
    service = _servicer_class()(store, name or f"{os.uname().nodename}:{port}", limits, totalizer, no_energy)
    from edgekit.splitter.relay import Onward

    # A pipeline stage calls the next one as a caller of this fleet: with this worker's own identity and token.
    service.onward = Onward(ClientAuth(auth.identity, auth.token), max_message_bytes)
    pb_grpc.add_ShardWorkerServicer_to_server(service, server)
    health_service = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    for svc in ("", SERVICE):
        health_service.set(svc, health_pb2.HealthCheckResponse.NOT_SERVING)
    bound = auth.bind(server, host, port)
    if name is None:
        service.name = f"{os.uname().nodename}:{bound}"
    server.start()

    def load_stored() -> None:
        # Runtimes are imported when a shard needs them, not at start: a worker that serves .tflite shards on a
        # Pi should not spend seconds and hundreds of MB importing torch for ExecuTorch it never uses.
        try:
            store.restore()
        except Exception:  # noqa: BLE001 -- a bug here must not leave the worker NOT_SERVING forever, unseen
            log.exception("loading the stored shards failed")
            store.ready.set()
        for svc in ("", SERVICE):
            health_service.set(svc, health_pb2.HealthCheckResponse.SERVING)

    threading.Thread(target=load_stored, name="restore", daemon=True).start()
    return RunningWorker(server, bound, store, health_service, gate, service, auth)
