"""One request id per request through Ray Serve's proxy.

The proxy answers every request with an `X-Request-ID` header of its own: the client's header as sent, or a new
id. This middleware runs in the proxy before that step and replaces the client's id by the service's
(`app.core.http.request_id`: the client's when it is short and plain, else a new one), so the header the proxy
repeats, the id the gateway forwards to the replica and the `request_id` of an error body are one and the same.
Ray reads it at the proxy's start from RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH (app.cluster.launch.RAY_ENV).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.http import request_id

HEADER = "x-request-id"


class ServiceRequestId:
    """ASGI middleware: the request's X-Request-ID becomes the one the service would use (exactly one header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = MutableHeaders(scope=scope)
            headers[HEADER] = request_id(headers.get(HEADER))  # replaces every copy the client sent
        await self.app(scope, receive, send)


def proxy_middlewares() -> list[Middleware]:
    """Ray Serve's proxy callback (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH)."""
    return [Middleware(ServiceRequestId)]
