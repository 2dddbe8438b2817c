"""``edgekit worker``: a gRPC server that holds shard bundles and runs them.

It needs only the runtime install (numpy, a runtime, grpcio) -- no torch. A shard arrives as a stream
of file chunks into a staging directory and is accepted only if the sha256 of its ``edgekit.json`` is
the digest the coordinator announced, every file matches the manifest's sha256, and the bundle loads
with its runtime; then it replaces any previous copy under ``WORKDIR/shards/NAME``. Deployed shards are
loaded again when a worker restarts. Requests are bounded (message size, bundle size, tensor bytes) and
checked field by field; a bad one gets INVALID_ARGUMENT with a one-line reason, never a crash.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.bundle import MANIFEST_NAME, Bundle, read_bundle
from edgekit.errors import BundleError, EdgekitError, InputError, MissingDependencyError
from edgekit.splitter.plan import bundle_digest
from edgekit.splitter.wire import decode, encode, proto
from edgekit.toolchain import edgekit_version

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
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
        (workdir / "shards").mkdir(parents=True, exist_ok=True)

    def restore(self) -> None:
        """Load the shards a previous run accepted (each re-verified; a damaged one is dropped)."""
        for record in sorted((self.workdir / "shards").glob(f"*/{_RECORD}")):
            try:
                meta = json.loads(record.read_text())
                self._load(meta["shard"], meta["digest"], record.parent)
            except (EdgekitError, OSError, KeyError, ValueError) as exc:
                log.warning("dropping stored shard %s: %s", record.parent.name, exc)
                shutil.rmtree(record.parent, ignore_errors=True)

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
        def __init__(self, store: ShardStore, name: str, max_bundle_bytes: int):
            self.store = store
            self.name = name
            self.max_bundle_bytes = max_bundle_bytes
            self.formats = available_formats()

        def _info(self, shard: LoadedShard):
            specs = [pb.Tensor(name=s.name, dtype=s.dtype, shape=list(s.shape)) for s in shard.runtime.input_specs]
            return pb.ShardInfo(shard=shard.name, digest=shard.digest, format=shard.format, inputs=specs)

        def Health(self, request, context):  # noqa: N802 (gRPC method names)
            return pb.HealthReply(
                status="ok", worker=self.name, edgekit_version=edgekit_version(), pid=os.getpid(),
                shards=[self._info(s) for s in self.store.snapshot()], formats=self.formats,
            )  # fmt: skip

        def Deploy(self, request_iterator, context):  # noqa: N802
            staging = self.store.workdir / f".staging-{uuid.uuid4().hex}"
            staging.mkdir()
            shard = digest = None
            total = 0
            start = time.perf_counter()
            try:
                for chunk in request_iterator:
                    if shard is None:
                        shard, digest = chunk.shard, chunk.digest
                        if not _NAME.fullmatch(shard) or not _DIGEST.fullmatch(digest):
                            raise InputError("deploy needs a shard name [A-Za-z0-9_.-] and a sha256 hex digest")
                    elif (chunk.shard, chunk.digest) != (shard, digest):
                        raise InputError("every chunk of one upload must name the same shard and digest")
                    parts = chunk.path.split("/")
                    if not parts or not all(_PATH_PART.fullmatch(p) for p in parts):
                        raise InputError(f"refusing upload path {chunk.path!r} (relative names only, no '..')")
                    total += len(chunk.data)
                    if total > self.max_bundle_bytes:
                        raise InputError(f"bundle larger than this worker's limit of {self.max_bundle_bytes} bytes")
                    target = staging.joinpath(*parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with target.open("ab") as fh:
                        fh.write(chunk.data)
                if shard is None:
                    raise InputError("empty upload")
                loaded = self.store.accept(shard, digest, staging)
            except InputError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except MissingDependencyError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            except EdgekitError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                context.abort(grpc.StatusCode.DATA_LOSS, str(exc))
            log.info("accepted shard %s (%s, %d bytes)", shard, loaded.format, total)
            return pb.DeployReply(shard=self._info(loaded), load_ms=(time.perf_counter() - start) * 1e3)

        def Infer(self, request, context):  # noqa: N802
            shard = self.store.get(request.shard)
            if shard is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"shard {request.shard!r} is not deployed on {self.name}")
            try:
                inputs = {t.name: decode(t) for t in request.inputs}
                if len(inputs) != len(request.inputs):
                    raise InputError("two inputs share a name")
                with shard.lock:  # native runtimes are not all safe to call from several threads
                    start = time.perf_counter()
                    outputs = shard.runtime.run(inputs)
                    compute_ms = (time.perf_counter() - start) * 1e3
            except InputError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except EdgekitError as exc:
                context.abort(grpc.StatusCode.INTERNAL, str(exc))
            return pb.InferReply(outputs=[encode(k, v) for k, v in outputs.items()], compute_ms=compute_ms)

    return ShardWorkerService


@dataclass
class RunningWorker:
    server: Any
    port: int
    store: ShardStore

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace).wait()
        self.store.close()


def start_worker(
    host: str = "127.0.0.1",
    port: int = 0,
    workdir: str | Path = "edgekit-worker",
    name: str | None = None,
    threads: int | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_bundle_bytes: int = MAX_BUNDLE_BYTES,
) -> RunningWorker:
    """Start serving (port 0 picks a free port); returns the server and the port it bound."""
    _, pb_grpc = proto()
    import grpc

    store = ShardStore(Path(workdir), threads)
    store.restore()
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
    service = _servicer_class()(store, name or f"{os.uname().nodename}:{port}", max_bundle_bytes)
    pb_grpc.add_ShardWorkerServicer_to_server(service, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise EdgekitError(f"cannot listen on {host}:{port} (in use, or not an address of this machine)")
    if name is None:
        service.name = f"{os.uname().nodename}:{bound}"
    server.start()
    # Runtimes are imported when a shard needs them, not at start: a worker that serves .tflite shards on a
    # Pi should not spend seconds and hundreds of MB importing torch for ExecuTorch it never uses.
    return RunningWorker(server, bound, store)
