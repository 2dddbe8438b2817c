"""The protocol over HTTP/REST (aiohttp): health, metadata and inference under ``/v2``.

aiohttp runs its event loop on a thread of its own; inference and readiness (which may ask workers over the
network) run on the server's thread pool, never on the loop. Every error leaves as ``{"error": "..."}`` with
the status ``status.ERROR_STATUS`` gives it, unknown paths included. With a token, every path but
``/v2/health/*`` needs ``Authorization: Bearer <token>`` (compared in constant time by ``ServerAuth``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Executor
from typing import Any

from edgekit.errors import ConfigError, MissingDependencyError
from edgekit.fleet.auth import TOKEN_HEADER, ServerAuth
from edgekit.serving.http_codec import HEADER_LENGTH, encode_infer, parse_infer
from edgekit.serving.service import EXTENSIONS, SERVER_NAME, InferenceService
from edgekit.serving.status import RequestTooLarge, status_of
from edgekit.serving.tls import server_context

log = logging.getLogger(__name__)

OPEN_PREFIX = "/v2/health/"
START_SECONDS = 30.0


def _web():
    try:
        from aiohttp import web
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "aiohttp", "serve", "serving over HTTP") from None
    return web


class HttpServer:
    """``start()`` binds and returns once listening (``port`` is then the bound one); ``stop()`` closes."""

    def __init__(self, service: InferenceService, host: str, port: int, auth: ServerAuth, max_body: int,
                 pool: Executor):  # fmt: skip
        self.service, self.host, self.port, self.auth = service, host, port, auth
        self.max_body, self.pool = max_body, pool
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> HttpServer:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # noqa: BLE001 -- handed to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="http", daemon=True)
        self._thread.start()
        if not started.wait(START_SECONDS):
            raise ConfigError(f"the HTTP listener on {self.host}:{self.port} did not start in {START_SECONDS:g} s")
        if failure:
            exc = failure[0]
            if isinstance(exc, OSError):
                raise ConfigError(
                    f"cannot listen on {self.host}:{self.port} for HTTP ({exc.strerror or exc})"
                ) from None
            raise exc
        return self

    async def _listen(self) -> None:
        web = _web()
        app = web.Application(client_max_size=self.max_body, middlewares=[self._errors, self._token])
        get, post = web.get, web.post
        routes = [get("/v2/health/live", self.live), get("/v2/health/ready", self.ready), get("/v2", self.server)]
        for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            routes += [get(prefix, self.model_metadata), get(prefix + "/ready", self.model_ready),
                       post(prefix + "/infer", self.infer)]  # fmt: skip
        app.add_routes(routes)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host.strip("[]"), self.port, ssl_context=server_context(self.auth),
                           reuse_address=True)  # fmt: skip
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    # -- middlewares -------------------------------------------------------------------------------

    @property
    def _errors(self):
        web = _web()

        @web.middleware
        async def errors(request, handler):
            try:
                return await handler(request)
            except web.HTTPRequestEntityTooLarge:
                exc = RequestTooLarge(f"the request body is larger than this server's {self.max_body >> 20} MiB "
                                      "(--max-request-mb)")  # fmt: skip
            except web.HTTPException as http:  # unknown path, wrong method
                if http.status < 400:
                    raise
                return web.json_response({"error": f"{http.reason}: {request.method} {request.path}"},
                                         status=http.status)  # fmt: skip
            except Exception as caught:  # noqa: BLE001 -- status_of logs what is not an EdgekitError
                exc = caught
            status, message = status_of(exc)
            return web.json_response({"error": message}, status=status.http)

        return errors

    @property
    def _token(self):
        web = _web()

        @web.middleware
        async def token(request, handler):
            if not request.path.startswith(OPEN_PREFIX):
                presented = request.headers.get(TOKEN_HEADER)
                if self.auth.token_refusal([(TOKEN_HEADER, presented)]):
                    message = "wrong bearer token" if presented else "this server requires Authorization: Bearer"
                    return web.json_response({"error": message}, status=401, headers={"WWW-Authenticate": "Bearer"})
            return await handler(request)

        return token

    # -- handlers ------------------------------------------------------------------------------------

    async def _blocking(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def live(self, request):
        return _web().json_response({"live": self.service.live()})

    async def ready(self, request):
        ready = await self._blocking(self.service.ready)
        return _web().json_response({"ready": ready}, status=200 if ready else 503)

    async def server(self, request):
        return _web().json_response({"name": SERVER_NAME, "version": self.service.version,
                                     "extensions": list(EXTENSIONS)})  # fmt: skip

    async def model_metadata(self, request):
        meta = self.service.metadata(request.match_info["model"], request.match_info.get("version", ""))
        return _web().json_response({
            "name": meta.name, "versions": [meta.version], "platform": meta.platform,
            "inputs": [_tensor_meta(s) for s in meta.inputs], "outputs": [_tensor_meta(s) for s in meta.outputs],
        })  # fmt: skip

    async def model_ready(self, request):
        ready = await self._blocking(self.service.model_ready, request.match_info["model"],
                                     request.match_info.get("version", ""))  # fmt: skip
        return _web().json_response({"name": request.match_info["model"], "ready": ready},
                                    status=200 if ready else 503)  # fmt: skip

    async def infer(self, request):
        web = _web()
        self.service.model(request.match_info["model"], request.match_info.get("version", ""))  # 404 first
        body = await request.read()
        asked = parse_infer(request.match_info["model"], request.match_info.get("version", ""), body,
                            request.headers.get(HEADER_LENGTH))  # fmt: skip
        response = await self._blocking(self.service.infer, asked.request)
        payload, header_length = encode_infer(response, asked)
        headers = {HEADER_LENGTH: str(header_length)} if header_length is not None else {}
        content_type = "application/octet-stream" if header_length is not None else "application/json"
        return web.Response(body=payload, headers=headers, content_type=content_type)


def _tensor_meta(spec) -> dict[str, Any]:
    from edgekit.serving.datatypes import for_numpy

    return {"name": spec.name, "datatype": for_numpy(spec.dtype).name, "shape": list(spec.shape)}
