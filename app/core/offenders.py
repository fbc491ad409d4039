"""Repeat offenders cool down: a client address whose uploads keep being refused as too large costs almost nothing.

A pixel bomb is refused on its header (413), but each refusal still costs the server a request's parse, routing,
error answer and metrics; eight threads sending bombs back to back took half the CPU of a 2-core server, and a
normal client lost half its throughput. `CoolDown` (ASGI middleware, outermost, installed by
`app.core.http.uvicorn_config`) counts the 413 answers per client address; after `refusals` of them within
`cool_down_s`, that address cools down for `cool_down_s`: each of its HTTP requests and WebSocket handshakes is held for
`HOLD_S` (a sleeping coroutine: a client that waits for answers sends one per second and connection), then
answered 429 `cooling_down` with Retry-After and its connection closed, its body never read. A stream closed for
an oversized message (1009, app/stream/ws_protocol.py) counts as a refusal too. Memory: at most `max_clients`
addresses (least recently seen dropped first), at most `MAX_HELD` held requests per address (beyond: the 429 at
once). /healthz and /readyz are never held. Behind a proxy every client has the proxy's address (as for the
per-client stream cap).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from app.core.errors import ServiceError, WsClose
from app.core.http import error_response, request_id

HOLD_S = 1.0
MAX_HELD = 16
OFFENDING_STATUS = 413
UNGUARDED = frozenset({"/healthz", "/readyz"})  # a health checker behind the same address is never held


class CoolingDown(ServiceError):
    status = 429
    type = "cooling_down"


@dataclass
class Record:
    """One address: refusals in the current window (from `since`), and the end of its cool-down."""

    since: float = 0.0
    refusals: int = 0
    until: float = 0.0
    held: int = 0


class CoolDown:
    """ASGI middleware: 429 `cooling_down` (after a hold) for addresses with `refusals` 413s within `cool_down_s`."""

    def __init__(self, app: ASGIApp, refusals: int, cool_down_s: float, max_clients: int = 4096) -> None:
        self.app, self.refusals, self.cool_down_s, self.max_clients = app, refusals, cool_down_s, max_clients
        self.clients: OrderedDict[str, Record] = OrderedDict()

    def _record(self, client: str) -> Record:
        record = self.clients.pop(client, None) or Record()
        self.clients[client] = record  # most recently seen last
        while len(self.clients) > self.max_clients:
            self.clients.popitem(last=False)
        return record

    def offend(self, client: str) -> None:
        """One more refused upload from `client`; the one that reaches `refusals` starts its cool-down."""
        now, record = time.monotonic(), self._record(client)
        if now - record.since > self.cool_down_s:
            record.since, record.refusals = now, 0
        record.refusals += 1
        if record.refusals >= self.refusals:
            record.until, record.refusals = now + self.cool_down_s, 0

    def cooling(self, client: str) -> float:
        """Seconds of cool-down left for `client` (0: none)."""
        record = self.clients.get(client)
        return max(0.0, record.until - time.monotonic()) if record else 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = (scope.get("client") or ("", 0))[0]
        if scope["type"] not in ("http", "websocket") or not self.cool_down_s or not client \
                or scope.get("path") in UNGUARDED:
            await self.app(scope, receive, send)
            return
        if self.cooling(client):
            await self._refuse(client, scope, receive, send)
            return
        if scope["type"] == "websocket":  # its streams count when closed for an oversized message (ws_protocol)
            await self.app(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == OFFENDING_STATUS:
                self.offend(client)
            await send(message)

        await self.app(scope, receive, watch)

    async def _refuse(self, client: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold the request (unless the address already has `MAX_HELD` held), then 429 and close, body unread."""
        record = self._record(client)
        if record.held < MAX_HELD:
            record.held += 1
            try:
                await asyncio.sleep(min(HOLD_S, self.cooling(client)))
            finally:
                record.held -= 1
        exc = CoolingDown("this address sent too many refused uploads; try again after Retry-After seconds")
        retry = str(max(1, math.ceil(self.cooling(client))))
        rid = request_id(dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1"))
        response = error_response(exc.status, exc.type, exc.message, rid, {"Retry-After": retry, "Connection": "close"})
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)  # a handshake: refused with the same answer where it can be
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(WsClose.TRY_AGAIN, "cooling down")
