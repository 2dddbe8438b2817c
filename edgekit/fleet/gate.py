"""The worker's call gate: a gRPC server interceptor in front of every method but the health checks.

It refuses a call without the bearer token (when the worker has one), a call beyond the bound on
concurrent calls (RESOURCE_EXHAUSTED), a second upload while one is running (deploys cannot take every
thread from inference), and any new call once the worker drains (UNAVAILABLE); it counts the calls in
flight so that a drain can wait for them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from edgekit.fleet.auth import ServerAuth

HEALTH_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


# How a refusal names the call that holds a one-at-a-time method.
_EXCLUSIVE_NAMES = {"Deploy": "upload", "Profile": "profile", "ProfileDevice": "device profile"}


def make_gate(auth: ServerAuth, max_calls: int, open_methods: frozenset[str], exclusive: frozenset[str]):
    """A ``CallGate`` (grpc.ServerInterceptor; grpc is imported here, not when edgekit is)."""
    import grpc

    class CallGate(grpc.ServerInterceptor):
        def __init__(self):
            self.draining = False
            self._active = 0
            self._changed = threading.Condition()
            self._exclusive = {m: threading.Lock() for m in exclusive}

        @property
        def active(self) -> int:
            with self._changed:
                return self._active

        def intercept_service(self, continuation, details):
            handler = continuation(details)
            if handler is None or details.method in open_methods | HEALTH_METHODS:
                return handler
            refusal = auth.token_refusal(details.invocation_metadata)
            if refusal:
                return _replace(handler, _refuse(grpc.StatusCode.UNAUTHENTICATED, refusal))
            return _wrap(handler, details.method, self._admit)

        @contextlib.contextmanager
        def _admit(self, method: str, context) -> Iterator[None]:
            with self._changed:
                if self.draining:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the worker is shutting down (draining)")
                if self._active >= max_calls:
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"more than {max_calls} calls at once")
                self._active += 1
            lock = self._exclusive.get(method)
            held = False
            try:
                if lock is not None:
                    held = lock.acquire(blocking=False)
                    if not held:
                        what = _EXCLUSIVE_NAMES.get(method.rsplit("/", 1)[-1], "call like this")
                        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"another {what} is in progress; retry later")
                yield
            finally:
                if held:
                    lock.release()
                with self._changed:
                    self._active -= 1
                    self._changed.notify_all()

        def drain(self, grace: float) -> bool:
            """Refuse new calls, wait up to ``grace`` seconds for those in flight; True if they all ended."""
            deadline = time.monotonic() + grace
            with self._changed:
                self.draining = True
                while self._active and time.monotonic() < deadline:
                    self._changed.wait(timeout=max(0.0, deadline - time.monotonic()))
                return self._active == 0

    def _refuse(code, message):
        def behavior(_request, context):
            context.abort(code, message)

        return behavior

    def _replace(handler, behavior):
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(behavior, handler.request_deserializer,
                                                        handler.response_serializer)  # fmt: skip
        return grpc.unary_unary_rpc_method_handler(behavior, handler.request_deserializer, handler.response_serializer)

    def _wrap(handler, method, admit):
        inner = handler.stream_unary or handler.unary_unary
        if inner is None:  # streaming replies: the worker has none beyond health
            return handler

        def behavior(request, context):
            with admit(method, context):
                return inner(request, context)

        return _replace(handler, behavior)

    return CallGate()
