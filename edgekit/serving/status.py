"""How an error becomes the protocol's answer: an HTTP status with ``{"error": ...}``, or a gRPC status code.

One row per kind of error, most specific first; the message is the EdgekitError's own one line. Anything
that is not an EdgekitError is a bug: logged with its trace here, answered as INTERNAL without details.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edgekit.errors import EdgekitError, InputError, UnknownNameError, WorkerError

log = logging.getLogger(__name__)


class RequestTooLarge(InputError):
    """A request body beyond the server's bound (``--max-request-mb``)."""


@dataclass(frozen=True)
class Status:
    http: int
    grpc: str  # a grpc.StatusCode member's name (grpc is imported by the gRPC side only)


ERROR_STATUS: tuple[tuple[type[BaseException], Status], ...] = (
    (UnknownNameError, Status(404, "NOT_FOUND")),  # no such model (or version)
    (RequestTooLarge, Status(413, "RESOURCE_EXHAUSTED")),
    (InputError, Status(400, "INVALID_ARGUMENT")),  # names, shapes, datatypes, byte counts, malformed bodies
    (WorkerError, Status(503, "UNAVAILABLE")),  # a split plan's worker failed or timed out
    (EdgekitError, Status(500, "INTERNAL")),
)
INTERNAL = Status(500, "INTERNAL")


def status_of(exc: BaseException) -> tuple[Status, str]:
    """(the status, the message a caller sees) for an error raised while answering a request."""
    for kind, status in ERROR_STATUS:
        if isinstance(exc, kind):
            return status, str(exc)
    log.error("unexpected error while serving a request", exc_info=exc)
    return INTERNAL, f"internal error ({type(exc).__name__}); the server log has the details"
