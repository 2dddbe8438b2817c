"""``serve()``: a bundle or a split plan behind the protocol's gRPC and HTTP listeners, in this process.

What a path is decides its backend (the SOURCES table: a bundle has ``edgekit.json``, a plan ``plan.json``).
Both listeners share one service; HTTP inference runs on a thread pool of ``max_calls`` threads, gRPC's on
its own, so neither transport can starve the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.bundle import MANIFEST_NAME
from edgekit.errors import BundleError, ConfigError
from edgekit.fleet.auth import ClientAuth, ServerAuth
from edgekit.serving.backend import ModelBackend
from edgekit.serving.grpc_server import GrpcServer, start_grpc
from edgekit.serving.http_server import HttpServer
from edgekit.serving.service import InferenceService

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 << 20
MAX_CALLS = 16


@dataclass(frozen=True)
class PlanOptions:
    """How a split plan's coordinator reaches its workers (the same choices as ``infer-split``)."""

    workers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 5.0
    degraded_ok: bool = False
    auth: ClientAuth = field(default_factory=ClientAuth)
    hedge_after: str | float | None = None  # "auto" or milliseconds: a slow shard call is also sent to a replica
    report: str | Path | None = None  # where the run report goes when the server closes


def _open_bundle(path: Path, name: str | None, graph: str | None, threads: int | None, plan: PlanOptions):
    from edgekit.serving.bundle_backend import BundleBackend

    if plan.report is not None:
        raise ConfigError("--report is a split plan's run report; a bundle served in-process has no workers")
    return BundleBackend(path, name, graph, threads)


def _open_plan(path: Path, name: str | None, graph: str | None, threads: int | None, plan: PlanOptions):
    from edgekit.serving.plan_backend import PlanBackend

    if graph is not None:
        raise ConfigError("--graph names a bundle's graph; a split plan has one model")
    return PlanBackend(
        path, plan.workers, plan.timeout, plan.degraded_ok, plan.auth, name, plan.hedge_after, plan.report
    )


# marker file -> what opens a directory holding it
SOURCES: tuple[tuple[str, Callable[..., ModelBackend]], ...] = (
    ("plan.json", _open_plan),
    (MANIFEST_NAME, _open_bundle),
)


def open_backend(path: str | Path, name: str | None = None, graph: str | None = None, threads: int | None = None,
                 plan: PlanOptions | None = None) -> ModelBackend:  # fmt: skip
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root} is not a directory: give a bundle (from `edgekit export`) or a split plan "
                          "(from `edgekit split`)")  # fmt: skip
    for marker, opener in SOURCES:
        if (root / marker).is_file():
            return opener(root, name, graph, threads, plan or PlanOptions())
    raise BundleError(f"{root} is neither a bundle ({MANIFEST_NAME}) nor a split plan (plan.json)")


@dataclass
class RunningServer:
    service: InferenceService
    grpc: GrpcServer
    http: HttpServer | None
    pool: futures.ThreadPoolExecutor

    @property
    def grpc_port(self) -> int:
        return self.grpc.port

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http else None

    def drain(self, grace: float) -> bool:
        """Refuse new gRPC calls and wait up to ``grace`` s for those in flight; True if they all ended."""
        return self.grpc.gate.drain(grace)

    def stop(self) -> None:
        if self.http:
            self.http.stop()
        self.grpc.stop(0)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.service.close()


def serve(backend: ModelBackend, host: str = "127.0.0.1", port: int = 8001, http_port: int | None = 8000,
          auth: ServerAuth | None = None, max_request_bytes: int = MAX_REQUEST_BYTES,
          max_calls: int = MAX_CALLS) -> RunningServer:  # fmt: skip
    """Listen for gRPC on ``port`` and HTTP on ``http_port`` (None: no HTTP; 0 picks a free port).

    Refuses (ConfigError) a non-loopback ``host`` without authentication unless ``auth.insecure``."""
    from edgekit.splitter.worker import check_port

    auth = auth or ServerAuth()
    warning = auth.check_bind(host)
    if warning:
        log.info("%s", warning)
    for p in (port, http_port):
        if p is not None:
            check_port(host, p)
    if http_port is not None and http_port == port and port != 0:
        raise ConfigError(f"--port and --http-port are both {port}: gRPC and HTTP need a port each")
    service = InferenceService([backend])
    grpc_server = start_grpc(service, host, port, auth, max_request_bytes, max_calls)
    pool = futures.ThreadPoolExecutor(max_workers=max_calls, thread_name_prefix="http-serve")
    http = None
    if http_port is not None:
        try:
            http = HttpServer(service, host, http_port, auth, max_request_bytes, pool).start()
        except BaseException:
            grpc_server.stop(0)
            pool.shutdown(wait=False)
            raise
    return RunningServer(service, grpc_server, http, pool)
