"""What every HTTP edge shares, the single server and the cluster gateway alike: request ids, the error answer,
the size-capped body reader (nothing past the limit is read) and the security headers of every answer."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import h11
from fastapi.responses import JSONResponse
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.core.errors import ServiceError, TooManyBytes, error_body
from app.core.logs import guard_server_logs

if TYPE_CHECKING:
    import uvicorn

    from app.core.settings import Settings

log = logging.getLogger("lgm_pose.http")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id(given: str | None) -> str:
    """The client's X-Request-ID when it is short and plain, else a new one."""
    return given if given and REQUEST_ID.match(given) else uuid.uuid4().hex[:16]


def error_response(status: int, type_: str, message: str, rid: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The error answer: `error_body` with the request id, which the X-Request-ID header repeats (and the security
    headers, also where no middleware adds them: 500s, the gateway)."""
    return JSONResponse(error_body(type_, message, rid), status_code=status,
                        headers={**security_headers(""), **(headers or {}), "X-Request-ID": rid})


def service_error_response(exc: ServiceError, rid: str) -> JSONResponse:
    return error_response(exc.status, exc.type, exc.message, rid, exc.headers)


def refuse_declared(request: Request, limit: int) -> None:
    """413 at once when the declared Content-Length passes `limit` (the body is not read)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooManyBytes(f"request of {declared} bytes exceeds the limit of {limit} bytes")


async def capped_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it streams in, cut off with 413 once it passes `limit` (chunked uploads included)."""
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooManyBytes(f"request body exceeds the limit of {limit} bytes")
        yield chunk


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) beyond `limit` bytes, declared or streamed, without reading the rest."""
    refuse_declared(request, limit)
    return b"".join([chunk async for chunk in capped_stream(request, limit)])


# Security headers on every answer. The demo page at / (and its files) needs its own script and inline style, its
# WebSocket and blob: videos; /docs and /redoc load Swagger UI and ReDoc from jsDelivr with an inline start-up
# script; everything else is data, which may load nothing at all.
DEMO_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
            "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
            "https://cdn.redoc.ly; worker-src blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")
API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


def security_headers(path: str) -> dict[str, str]:
    """The security headers of an answer on `path`: a Content-Security-Policy for what the path serves."""
    if path == "/" or path.startswith("/static/"):
        csp = DEMO_CSP
    elif path in ("/docs", "/redoc"):
        csp = DOCS_CSP
    else:
        csp = API_CSP
    return {"Content-Security-Policy": csp, **SECURITY_HEADERS}


class SecurityHeaders:
    """ASGI middleware: `security_headers` on every HTTP answer that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in security_headers(scope["path"]).items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the edge's connection limits (set by `guarded_h11`):

    - a connection must complete its request line and headers within `header_timeout_s` of opening (or of its
      previous answer), else it is closed: slow-header clients cannot hold connections;
    - beyond `max_connections` open connections (HTTP and WebSocket), a new one gets 503 + Retry-After for its
      request and is closed (it is not upgraded to a WebSocket);
    - a malformed request, or request headers past h11's `max_incomplete_event_size`, get 400 / 431 in the one
      error shape instead of uvicorn's plain text;
    - an answer given before its request's body arrived (401, 413) closes the connection: the rest is not read.
    """

    header_timeout_s: float = 10.0
    max_connections: int = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.refused = len(self.connections) > self.max_connections
        if self.refused:
            self.app = too_many_connections
        self.header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
        self.header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _header_timeout(self) -> None:
        """Close the connection if its request's headers are still incomplete (h11: the client is IDLE)."""
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.debug("closed a connection from %s: no complete request headers within %.3g s", self.client,
                     self.header_timeout_s)
            self.transport.close()

    def on_response_complete(self) -> None:
        if self.conn.their_state is h11.SEND_BODY:  # answered (401, 413, ...) before the body came: close rather
            self.transport.close()                   # than read and discard the rest, as uvicorn would
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request's headers have the same time

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
        super().connection_lost(exc)

    def _should_upgrade(self) -> bool:
        return not self.refused and super()._should_upgrade()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()  # the transport is the WebSocket protocol's now
        super().handle_websocket_upgrade(event)

    def send_400_response(self, msg: str) -> None:
        """A malformed request (400) or headers past the limit (431): the error shape, then close."""
        limit = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        if len(self.conn.trailing_data[0]) > limit:
            status, type_, message = 431, "headers_too_large", f"request line and headers exceed {limit} bytes"
        else:
            status, type_, message = 400, "bad_request", "malformed HTTP request"
        rid = request_id(None)
        body = json.dumps(error_body(type_, message, rid)).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(body))), ("connection", "close"),
                   ("x-request-id", rid), *security_headers("").items()]
        try:
            for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # an answer was already under way: nothing more can be said
            pass
        self.transport.close()


async def too_many_connections(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer of a connection past `max_connections`: 503 + Retry-After, and the connection closed."""
    response = error_response(503, "too_many_connections", "too many open connections; try again shortly",
                              request_id(None), {"Retry-After": "1", "Connection": "close"})
    await response(scope, receive, send)


def guarded_h11(header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """`GuardedH11Protocol` with these limits, for uvicorn's `http=` option."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"header_timeout_s": header_timeout_s, "max_connections": max_connections})


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The one uvicorn configuration, of `lgm-pose serve` and the test servers alike (`overrides`: host, port,
    log level): the edge's limits from `settings` (README: Access and limits), repeat offenders cooled down
    outermost (app/core/offenders.py)."""
    import uvicorn

    from app.core.offenders import CoolDown

    cool_down = CoolDown(app, settings.offender_refusals, settings.offender_cool_down_s)

    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "log_level": settings.log_level.lower(),
        "server_header": False, "timeout_graceful_shutdown": settings.shutdown_timeout_s,
        # h11, not httptools: a bounded header buffer (httptools joins a huge header's pieces in quadratic time)
        "http": guarded_h11(settings.header_timeout_s, settings.max_connections),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        # pongs held back from a client that does not read (app/stream/ws_protocol.py)
        "ws": "app.stream.ws_protocol:GuardedWebSocketProtocol",
        "ws_per_message_deflate": False,  # frames are JPEG (incompressible); no inflate-bomb vector
        "ws_max_size": settings.ws_max_frame_bytes + 4096,  # a WebSocket message past this is refused (1009) unread
    }
    config = uvicorn.Config(cool_down if settings.offender_cool_down_s else app,
                            **{**options, **overrides})  # (re)configures uvicorn's loggers
    if settings.offender_cool_down_s:
        config.cool_down = cool_down  # type: ignore[attr-defined]  # the WebSocket protocol counts 1009 closes
    guard_server_logs()  # after that: no log write can block the event loop, per-connection lines throttled
    return config
