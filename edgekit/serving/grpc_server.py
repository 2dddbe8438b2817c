"""The protocol over gRPC: ``inference.GRPCInferenceService`` on a grpcio server.

Callers are authenticated as the worker's are (``edgekit.fleet``): TLS or mutual TLS with the fleet's
credentials, and the worker's call gate for the bearer token and the bound on calls at once; ServerLive
and ServerReady stay open, like the worker's health checks. Errors are the codes of ``status.ERROR_STATUS``.
"""

from __future__ import annotations

import contextlib
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from edgekit.fleet.auth import SERVER_KEEPALIVE, ServerAuth
from edgekit.serving.grpc_codec import encode_infer, encode_metadata, parse_infer, proto
from edgekit.serving.service import EXTENSIONS, SERVER_NAME, InferenceService
from edgekit.serving.status import status_of

SERVICE = "inference.GRPCInferenceService"
OPEN_METHODS = frozenset({f"/{SERVICE}/ServerLive", f"/{SERVICE}/ServerReady"})


@dataclass
class GrpcServer:
    server: Any
    port: int
    gate: Any

    def stop(self, grace: float = 0) -> None:
        self.server.stop(grace)


def start_grpc(service: InferenceService, host: str, port: int, auth: ServerAuth, max_message: int,
               max_calls: int) -> GrpcServer:  # fmt: skip
    import grpc

    from edgekit.fleet.gate import make_gate

    _, pb_grpc = proto()
    gate = make_gate(auth, max_calls, OPEN_METHODS, frozenset())
    options = [("grpc.max_receive_message_length", max_message), ("grpc.max_send_message_length", max_message),
               ("grpc.so_reuseport", 0), *SERVER_KEEPALIVE]  # fmt: skip
    pool = futures.ThreadPoolExecutor(max_workers=max_calls + 2, thread_name_prefix="grpc-serve")
    server = grpc.server(pool, options=options, interceptors=[gate])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(_servicer_class()(service), server)
    bound = auth.bind(server, host, port, " for gRPC")
    server.start()
    return GrpcServer(server, bound, gate)


def _servicer_class():
    pb, pb_grpc = proto()
    import grpc

    @contextlib.contextmanager
    def answering(context):
        try:
            yield
        except Exception as exc:  # noqa: BLE001 -- every error becomes the protocol's status
            status, message = status_of(exc)
            context.abort(getattr(grpc.StatusCode, status.grpc), message)

    class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
        def __init__(self, service: InferenceService):
            self.service = service

        def ServerLive(self, request, context):  # noqa: N802 (the protocol's method names)
            return pb.ServerLiveResponse(live=self.service.live())

        def ServerReady(self, request, context):  # noqa: N802
            with answering(context):
                return pb.ServerReadyResponse(ready=self.service.ready())

        def ModelReady(self, request, context):  # noqa: N802
            with answering(context):
                return pb.ModelReadyResponse(ready=self.service.model_ready(request.name, request.version))

        def ServerMetadata(self, request, context):  # noqa: N802
            return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.service.version, extensions=EXTENSIONS)

        def ModelMetadata(self, request, context):  # noqa: N802
            with answering(context):
                return encode_metadata(self.service.metadata(request.name, request.version))

        def ModelInfer(self, request, context):  # noqa: N802
            with answering(context):
                return encode_infer(self.service.infer(parse_infer(request)))

    return InferenceServicer
