"""The worker's side of a layer pipeline (``Relay``): run this stage, send the result on to the next one.

The caller sends the input to the first stage with the list of hops after it; each worker runs its stage
under the shard's lock (released before the hand-off, so the next input can start here while this one moves
on) and calls the next worker's ``Relay`` itself, with the rest of the list and what is left of the caller's
deadline. Onward calls authenticate as the caller's did: this worker presents its own fleet identity (its
certificate is issued for client and server use) and its token, through :class:`edgekit.fleet.auth.ClientAuth`.
A stage that fails or does not answer ends the request with ABORTED and a message that starts
``stage NAME on DEVICE (ADDRESS)``; stages before it pass that message back unchanged, so the caller learns
which stage it was, not only that its first hop failed.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from edgekit.fleet.auth import ClientAuth
from edgekit.splitter.shard_run import run_shard
from edgekit.splitter.wire import encode, proto

MAX_HOPS = 64
FAILED_PREFIX = "stage "  # an ABORTED reply whose details start so names the stage that failed
_ADDRESS = re.compile(r"[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}")
_SAFETY_S = 0.05  # an onward call gives up this much before the caller's deadline, to report which stage


class Onward:
    """Channels from this worker to the next stages, one per (address, device), kept open between requests."""

    def __init__(self, auth: ClientAuth, max_message_bytes: int):
        self.auth = auth
        self.options = [("grpc.max_receive_message_length", max_message_bytes),
                        ("grpc.max_send_message_length", max_message_bytes)]  # fmt: skip
        self._stubs: dict[tuple[str, str], Any] = {}
        self._channels: list[Any] = []
        self._lock = threading.Lock()

    def stub(self, address: str, device: str):
        _, pb_grpc = proto()
        with self._lock:
            key = (address, device)
            if key not in self._stubs:
                channel = self.auth.channel(address, device, self.options)
                self._channels.append(channel)
                self._stubs[key] = pb_grpc.ShardWorkerStub(channel)
            return self._stubs[key]

    def close(self) -> None:
        with self._lock:
            for channel in self._channels:
                channel.close()
            self._channels, self._stubs = [], {}


def failed_stage(shard: str, device: str, address: str, what: str) -> str:
    return f"{FAILED_PREFIX}{shard} on {device} ({address}) {what}"


def relay(service: Any, request: Any, context: Any) -> Any:
    """The ``Relay`` method of a worker's service (``service.store``, ``service.name``, ``service.onward``)."""
    import grpc

    pb, _ = proto()
    hops = list(request.next)
    if len(hops) > MAX_HOPS:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_HOPS} stages follow one, got {len(hops)}")
    for hop in hops:
        if not hop.shard or not hop.device or not _ADDRESS.fullmatch(hop.address):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"a next stage needs shard, device and host:port, got "
                          f"{hop.shard!r} on {hop.device!r} at {hop.address!r}")  # fmt: skip
    shard = service.store.get(request.shard)
    if shard is None:
        context.abort(grpc.StatusCode.NOT_FOUND, f"shard {request.shard!r} is not deployed on {service.name}")
    outputs, compute_ms = run_shard(shard, request.inputs, context, rename_single=True)
    mine = pb.StageTime(shard=request.shard, worker=service.name, compute_ms=compute_ms, bytes_in=request.ByteSize())
    encoded = [encode(k, v) for k, v in outputs.items()]
    if not hops:
        return pb.RelayReply(outputs=encoded, stages=[mine])
    nxt = hops[0]
    if len(encoded) != 1:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                      f"stage {request.shard} gives {len(encoded)} outputs; a pipeline stage hands on one")  # fmt: skip
    remaining = context.time_remaining()
    timeout = None if remaining is None else remaining - _SAFETY_S
    if timeout is not None and timeout <= 0:
        context.abort(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            failed_stage(nxt.shard, nxt.device, nxt.address, "was not reached before the deadline"),
        )
    onward = pb.RelayRequest(shard=nxt.shard, inputs=encoded, next=hops[1:])
    try:
        reply = service.onward.stub(nxt.address, nxt.device).Relay(onward, timeout=timeout)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.ABORTED and details.startswith(FAILED_PREFIX):
            context.abort(grpc.StatusCode.ABORTED, details)  # a stage further on; already named
        context.abort(grpc.StatusCode.ABORTED, failed_stage(nxt.shard, nxt.device, nxt.address, _reason(exc, timeout)))
    return pb.RelayReply(outputs=reply.outputs, stages=[mine, *reply.stages])


def _reason(exc: Any, timeout: float | None) -> str:
    name = getattr(exc.code(), "name", "ERROR")
    details = (exc.details() or "").splitlines()[0][:200] if exc.details() else "no details"
    if name == "DEADLINE_EXCEEDED":
        return f"did not answer within {timeout:.2f} s" if timeout else "did not answer in time"
    if name == "UNAVAILABLE":
        return f"is unreachable or stopped ({details})"
    if name == "UNAUTHENTICATED":
        return f"refused the previous stage's credentials ({details})"
    return f"refused the request ({name}: {details})"
