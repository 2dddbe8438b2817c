"""A bundle or a split plan as a long-running endpoint on the Open Inference Protocol (KServe v2).

``server.serve(open_backend(PATH))`` listens for gRPC (``inference.GRPCInferenceService``) and HTTP/REST
(``/v2/...``) at once; any client of the protocol (tritonclient, KServe's) can call it. grpc and aiohttp are
imported when a server starts, not when this package is.
"""

from __future__ import annotations

from edgekit.serving.server import PlanOptions, RunningServer, open_backend, serve

__all__ = ["PlanOptions", "RunningServer", "open_backend", "serve"]
