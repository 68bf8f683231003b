"""The ASGI app (starlette): routes, body size limit, CORS, access log, metrics, lifespan.

Imported only when a server is built: ``import tfdeploy`` never imports starlette.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from . import codec
from .config import ServerOptions
from .logs import setup_logging
from .server import Server
from .status import ServingError

access_log = logging.getLogger("tfdeploy.serve.access")

ENV_OPTIONS = "TFDEPLOY_SERVE_OPTIONS"
_JSON = "application/json"
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
         "Access-Control-Allow-Headers": "Content-Type"}
# past the limit, a body is still read (and dropped) up to this much more, so the client gets
# the 413 instead of a broken connection while it is still sending
_DRAIN_BYTES = 64 << 20


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > limit
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                too_large = True
            if too_large:
                if size > limit + _DRAIN_BYTES:
                    break
                continue
            chunks.append(chunk)
    except ClientDisconnect:
        raise ServingError("CANCELLED", "the client disconnected while sending") from None
    if too_large:
        shown = declared if declared.isdigit() else f"more than {limit}"
        raise ServingError("PAYLOAD_TOO_LARGE", f"Request body of {shown} bytes exceeds the "
                           f"limit of {limit} bytes (--rest_api_max_body_bytes)")
    return b"".join(chunks)


class _AccessLog:
    """One line per request: client, request line, status, bytes sent, milliseconds."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        sent = {"status": 0, "bytes": 0}

        async def send_logged(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            client = scope.get("client") or ("-", 0)
            path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
            access_log.info('%s "%s %s HTTP/%s" %d %d %.2fms', client[0], scope["method"],
                            path, scope.get("http_version", "1.1"), sent["status"],
                            sent["bytes"], (time.perf_counter() - t0) * 1e3)


def create_app(options: ServerOptions, models: dict | None = None):
    """The ASGI app serving ``options.models`` (and in-memory ``models``: name -> Model)."""
    server = Server(options, models)
    cors = _CORS if options.enable_cors else {}

    async def v1(request: Request) -> Response:
        t0 = time.perf_counter()
        raw = request.scope.get("raw_path") or request.url.path.encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        if request.method == "OPTIONS" and options.enable_cors:
            if request.headers.get("origin", "").startswith(("http://", "https://")):
                return Response(b"", 200, headers=cors)
            return Response(codec.error_json("Origin header is missing in CORS preflight"),
                            400, media_type=_JSON, headers=cors)
        status, body, name = await server.handle(
            request.method, path, lambda: _read_body(request, options.max_body_bytes))
        server.observe(name, server.api_of(request.method, path), status,
                       time.perf_counter() - t0)
        return Response(body, status, media_type=_JSON, headers=cors)

    async def metrics(request: Request) -> Response:
        text = await asyncio.to_thread(server.metrics_text)
        return Response(text, 200,
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def not_found(request: Request) -> Response:
        return Response(codec.error_json(f"Not found: {request.method} {request.url.path} (the "
                                         "API is under /v1/models)"), 404, media_type=_JSON)

    @asynccontextmanager
    async def lifespan(app):
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    methods = ["GET", "POST", "OPTIONS", "PUT", "DELETE", "PATCH", "HEAD"]
    app = Starlette(routes=[
        Route("/metrics", metrics, methods=["GET"]),
        Route("/monitoring/prometheus/metrics", metrics, methods=["GET"]),
        Route("/v1/{rest:path}", v1, methods=methods),
        Route("/V1/{rest:path}", v1, methods=methods),
        Route("/{rest:path}", not_found, methods=methods),
    ], lifespan=lifespan)
    app.state.server = server
    return _AccessLog(app) if options.access_log else app


def app_from_env():
    """The app factory each ``--workers`` process calls (options come in an env variable)."""
    setup_logging()
    return create_app(ServerOptions.from_json(os.environ[ENV_OPTIONS]))
