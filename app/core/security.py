"""Access control: the host allow-list, an optional API key (bearer token) and the origins allowed to open streams.

- Hosts: every request and WebSocket handshake must name, in its `Host` header, a host the service serves:
  localhost names, the bound address, the address the connection arrived on, and `LGM_POSE_ALLOWED_HOSTS`
  (`name`, `*.domain` for its subdomains, `*` for any). Anything else (a DNS-rebinding page's own name) gets 400
  `host_not_allowed` before routing (`HostAllowList`).
- Key: with `LGM_POSE_API_KEY` set, every route except /healthz and /readyz (and /metrics when
  `LGM_POSE_METRICS_PUBLIC`) needs `Authorization: Bearer <key>`; a browser's WebSocket, which cannot send
  headers, offers the subprotocol `bearer.<key>` beside `lgm-pose`, which the server selects (the key is never
  echoed). Keys are URL-safe (`A-Z a-z 0-9 - _ . ~`) so that a browser can offer them (checked at start).
- Origins: a WebSocket handshake with an `Origin` is accepted only from an origin listed in
  `LGM_POSE_ALLOWED_ORIGINS`, or an http(s) origin whose host passes the allow-list and whose port is the port
  the client connected to.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from app.core.errors import ServiceError, WsClose
from app.core.http import error_response, request_id
from app.core.settings import Settings

SUBPROTOCOL = "lgm-pose"  # the one subprotocol the server selects
SUBPROTOCOL_PREFIX = "bearer."
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class Unauthorized(ServiceError):
    status = 401
    type = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class HostNotAllowed(ServiceError):
    status = 400
    type = "host_not_allowed"


def offered_key(conn: HTTPConnection) -> str | None:
    """The key a client offers: the Authorization header, else a `bearer.<key>` subprotocol."""
    auth = conn.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    for proto in (p.strip() for p in conn.headers.get("sec-websocket-protocol", "").split(",")):
        if proto.startswith(SUBPROTOCOL_PREFIX):
            return proto[len(SUBPROTOCOL_PREFIX):]
    return None


def check_key(conn: HTTPConnection, settings: Settings) -> None:
    """Unauthorized unless the right key is offered (no key configured: open)."""
    if settings.api_key is None:
        return
    key = offered_key(conn)
    if key is None or not hmac.compare_digest(key.encode(), settings.api_key.get_secret_value().encode()):
        raise Unauthorized("missing or wrong API key: send Authorization: Bearer <key>")


def selected_subprotocol(scope: Scope) -> str | None:
    """`lgm-pose` when the client offers it (a browser that offered any subprotocol needs one selected)."""
    return SUBPROTOCOL if SUBPROTOCOL in (scope.get("subprotocols") or ()) else None


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header's (lower-case name without brackets, port or None); None when it is not a host[:port]."""
    try:
        parts = urlsplit("//" + value)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return parts.hostname.rstrip("."), port


def host_matches(name: str, patterns: Iterable[str]) -> bool:
    """`name` is one of `patterns` (`*` any, `*.example.com` its subdomains)."""
    for pattern in patterns:
        pattern = pattern.strip().lower().strip("[]").rstrip(".")
        if pattern == "*" or pattern == name or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


def host_allowed(name: str, scope: Scope, settings: Settings) -> bool:
    """`name` is served here: a localhost name, the bound or the connection's local address, or allow-listed."""
    local = (scope.get("server") or ("",))[0] or ""
    own = {settings.host.lower().strip("[]"), local.lower()} - WILDCARD_BINDS
    return name in LOCAL_NAMES or name in own or host_matches(name, settings.allowed_hosts)


def normal_origin(origin: str) -> str:
    """scheme://host[:port], lower case, the scheme's default port left out (for comparing listed origins)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return origin
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    keep = port is not None and port != DEFAULT_PORTS.get(parts.scheme)
    return f"{parts.scheme.lower()}://{host}{f':{port}' if keep else ''}"


def origin_allowed(conn: HTTPConnection, settings: Settings) -> bool:
    """True without an Origin (non-browser clients), for a listed origin, or for an http(s) origin whose host is
    allowed and whose port is the one the client connected to (the Host header's)."""
    origin = conn.headers.get("origin")
    if not origin:
        return True
    if normal_origin(origin) in {normal_origin(o) for o in settings.allowed_origins}:
        return True
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    host = split_host(conn.headers.get("host", ""))
    if parts.scheme not in ("http", "https") or not parts.hostname or host is None:
        return False
    default = DEFAULT_PORTS[parts.scheme]
    return (origin_port or default) == (host[1] or default) and host_allowed(parts.hostname.rstrip("."),
                                                                             conn.scope, settings)


class HostAllowList:
    """ASGI middleware: HTTP requests and WebSocket handshakes whose Host is not served here get 400
    `host_not_allowed` in the one error shape (a WebSocket: as its handshake answer), before routing."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        host = split_host(conn.headers.get("host", ""))
        if host is not None and host_allowed(host[0], scope, self.settings):
            await self.app(scope, receive, send)
            return
        exc = HostNotAllowed("the Host header names no host this service serves (LGM_POSE_ALLOWED_HOSTS)")
        response = error_response(exc.status, exc.type, exc.message, request_id(conn.headers.get("x-request-id")))
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(WsClose.POLICY, "host not allowed")
