"""Access control: an optional API key (bearer token) and the origins allowed to open streams.

With `LGM_POSE_API_KEY` set, every route except /healthz and /readyz (and /metrics when
`LGM_POSE_METRICS_PUBLIC`) needs `Authorization: Bearer <key>`; a browser's WebSocket, which cannot send
headers, may offer the subprotocol `bearer.<key>` instead. WebSocket handshakes from another origin are
refused unless the origin is listed in `LGM_POSE_ALLOWED_ORIGINS` (same origin only by default).
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from app.core.errors import ServiceError
from app.core.settings import Settings

SUBPROTOCOL_PREFIX = "bearer."


class Unauthorized(ServiceError):
    status = 401
    type = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


def offered_key(conn: HTTPConnection) -> tuple[str | None, str | None]:
    """The key a client offers (Authorization header, else a `bearer.<key>` subprotocol) and that subprotocol."""
    auth = conn.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip(), None
    for proto in (p.strip() for p in conn.headers.get("sec-websocket-protocol", "").split(",")):
        if proto.startswith(SUBPROTOCOL_PREFIX):
            return proto[len(SUBPROTOCOL_PREFIX):], proto
    return None, None


def check_key(conn: HTTPConnection, settings: Settings) -> str | None:
    """Unauthorized unless the right key is offered (no key configured: open); returns the subprotocol used."""
    if settings.api_key is None:
        return None
    key, proto = offered_key(conn)
    if key is None or not hmac.compare_digest(key.encode(), settings.api_key.get_secret_value().encode()):
        raise Unauthorized("missing or wrong API key: send Authorization: Bearer <key>")
    return proto


def origin_allowed(conn: HTTPConnection, settings: Settings) -> bool:
    """True for requests without an Origin (non-browser clients), from the same host, or from an allowed origin."""
    origin = conn.headers.get("origin")
    if not origin:
        return True
    if origin in settings.allowed_origins:
        return True
    return urlsplit(origin).netloc.lower() == conn.headers.get("host", "").lower()
