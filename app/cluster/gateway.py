"""The cluster's ingress: a thin FastAPI app (no model) in front of the pose replicas.

- HTTP: every request is forwarded through Ray to a pose replica (`PoseWorker.http`), which runs it through the
  service app itself; the response names the replica (`X-Replica`). When the replica dies mid-request, the
  request is sent again to another one (retries, counted in `X-Attempts`); when none can answer, the client
  gets 503 + Retry-After in the service's error shape, never Ray's bare 500 and never a hang
  (`request_timeout_s`).
- WS /ws/pose: relayed to one replica for the stream's life (its tracker and smoother live there), the
  replica with the fewest streams from this gateway; the handshake answer names it (`X-Replica`).
- GET /cluster/replicas and /cluster/targets: the live replicas, the latter in Prometheus' HTTP service
  discovery format (one scrape target per replica, labelled `replica`).
"""

# no `from __future__ import annotations`: Ray Serve's class-based routes need real annotations

import asyncio
import logging
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import websockets
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.websockets import WebSocketDisconnect

from app.cluster.registry import Registry
from app.cluster.settings import ClusterSettings
from app.core.errors import ReplicaUnavailable, ServiceError, WsClose
from app.core.http import read_capped, request_id, service_error_response
from app.core.security import check_key, origin_allowed
from app.core.settings import Settings

log = logging.getLogger("lgm_pose.cluster")
REQUEST_ID_HEADER = "x-request-id"  # Ray Serve's proxy adds it to every answer
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
HOP_BY_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length",
              "proxy-authorization", "proxy-connection"}
RETRYABLE_POSTS = ("/pose", "/pose/render")  # pure computations: safe to send again
gateway_app = FastAPI(title="LGM-Pose cluster gateway", docs_url=None, redoc_url=None, openapi_url=None)


def _request_id(request: Request) -> str:
    """The request's id: the proxy has made it the service's (app.cluster.request_ids) and will answer with it."""
    return request_id(request.headers.get(REQUEST_ID_HEADER))


def _error(request: Request, exc: ServiceError) -> JSONResponse:
    """The gateway's own errors in the service's shape, with the request's id in the body; the header is the
    proxy's (one copy)."""
    response = service_error_response(exc, _request_id(request))
    del response.headers[REQUEST_ID_HEADER]
    return response


gateway_app.add_exception_handler(ServiceError, _error)


async def _relay(client: WebSocket, upstream: Any) -> None:
    """Copy messages both ways until one side closes; the other side gets the same close code."""

    async def client_to_upstream() -> None:
        while True:
            message = await client.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(message.get("code", 1000))
                return
            await upstream.send(message["bytes"] if message.get("bytes") is not None else message.get("text", ""))

    async def upstream_to_client() -> None:
        try:
            async for message in upstream:
                if isinstance(message, bytes):
                    await client.send_bytes(message)
                else:
                    await client.send_text(message)
            code, reason = upstream.close_code or 1000, upstream.close_reason or ""
        except websockets.ConnectionClosedError:  # the replica went away without a close frame
            code, reason = WsClose.RESTART, "the stream's replica stopped; reconnect"
        try:
            await client.close(code, reason)
        except RuntimeError:
            pass

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() and not isinstance(task.exception(), (WebSocketDisconnect,
                                                                       websockets.ConnectionClosed)):
                log.warning("stream relay ended: %r", task.exception())
    finally:
        for task in tasks:
            task.cancel()


# after every helper it uses: serve.ingress serialises the app and its routes when the class is made
@serve.ingress(gateway_app)
class Gateway:
    """The ingress deployment's class (its Ray options: app.cluster.application)."""

    def __init__(self, worker: Any, overrides: dict[str, Any], cluster: dict[str, Any]) -> None:
        self.worker = worker
        self.settings = Settings(**overrides)
        self.cluster = ClusterSettings(**cluster)
        self.body_limit = self.settings.max_upload_bytes + 64 * 1024  # multipart framing around the image
        self.registry = Registry()
        self.streams: Counter[str] = Counter()  # per replica
        self.clients: Counter[str] = Counter()  # per client address: LGM_POSE_WS_MAX_STREAMS_PER_CLIENT

    @gateway_app.get("/cluster/replicas", include_in_schema=False)
    async def replicas(self, request: Request) -> JSONResponse:
        check_key(request, self.settings)  # Unauthorized: 401
        live = await self.registry.live()
        return JSONResponse({"replicas": [{**e, "streams": self.streams[e["replica"]]} for e in live]})

    @gateway_app.get("/cluster/targets", include_in_schema=False)
    async def targets(self, request: Request) -> JSONResponse:
        """Prometheus http_sd_configs: one target per live replica (its own /metrics)."""
        check_key(request, self.settings)  # Unauthorized: 401
        return JSONResponse([{"targets": [urlsplit(e["url"]).netloc], "labels": {"replica": e["replica"]}}
                             for e in await self.registry.live()])

    @gateway_app.websocket("/ws/pose")
    async def ws_pose(self, websocket: WebSocket) -> None:
        if not origin_allowed(websocket, self.settings):
            await websocket.close(WsClose.POLICY, "origin not allowed")
            return
        live = await self.registry.live()
        if not live:
            await websocket.close(WsClose.TRY_AGAIN, "no pose replica is up")
            return
        who = websocket.client.host if websocket.client else "-"  # the replicas see only the gateway's address
        if self.clients[who] >= self.settings.ws_max_streams_per_client:
            await websocket.close(WsClose.TRY_AGAIN, f"too many streams from this client ({self.clients[who]}, "
                                                     "the limit)")
            return
        target = min(live, key=lambda e: (self.streams[e["replica"]], e["replica"]))
        url = target["url"].replace("http://", "ws://", 1) + "/ws/pose"
        if websocket.url.query:
            url += "?" + websocket.url.query
        headers = [(k, v) for k, v in websocket.headers.items() if k.lower() == "authorization"]
        try:
            upstream = await websockets.connect(url, additional_headers=headers, compression=None, open_timeout=15,
                                                subprotocols=websocket.scope.get("subprotocols") or None,
                                                max_size=self.settings.ws_max_frame_bytes + 4096)
        except websockets.InvalidStatus as exc:  # the replica refused the handshake (403: the key)
            await websocket.close(WsClose.POLICY if exc.response.status_code == 403 else WsClose.TRY_AGAIN,
                                  "refused by the replica")
            return
        except (OSError, TimeoutError, websockets.WebSocketException):
            await websocket.close(WsClose.TRY_AGAIN, "the chosen replica is unreachable; retry")
            return
        await websocket.accept(upstream.subprotocol, headers=[(b"x-replica", target["replica"].encode())])
        self.streams[target["replica"]] += 1
        self.clients[who] += 1
        try:
            await _relay(websocket, upstream)
        finally:
            self.streams[target["replica"]] -= 1
            self.clients[who] -= 1
            if not self.clients[who]:
                del self.clients[who]
            await upstream.close()

    @gateway_app.api_route("/{path:path}", methods=METHODS, include_in_schema=False)
    async def forward(self, request: Request, path: str) -> Response:
        body = await read_capped(request, self.body_limit)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | {REQUEST_ID_HEADER}]
        headers.append((REQUEST_ID_HEADER, _request_id(request)))  # the replica's body says the same id
        method, full_path = request.method, "/" + path
        retryable = method in ("GET", "HEAD", "OPTIONS") or (method == "POST" and full_path in RETRYABLE_POSTS)
        attempts = 1 + (self.cluster.retries if retryable else 0)
        why = "no pose replica could answer"
        for attempt in range(attempts):
            try:
                call = self.worker.http.remote(method, full_path, request.url.query, headers, body)
                out = await asyncio.wait_for(call, self.cluster.request_timeout_s)
            except RayActorError as exc:  # the replica died while it had the request
                why = f"the replica serving the request stopped ({type(exc).__name__})"
                log.warning("%s %s: attempt %d: %s", method, full_path, attempt + 1, why)
                continue
            except (BackPressureError, DeploymentUnavailableError) as exc:
                raise ReplicaUnavailable(f"cluster busy or no replica up: {type(exc).__name__}") from None
            except TimeoutError:
                raise ReplicaUnavailable(f"no answer within {self.cluster.request_timeout_s:g} s") from None
            response_headers = {k: v for k, v in out["headers"]
                                if k.lower() not in HOP_BY_HOP | {REQUEST_ID_HEADER}}  # the proxy's copy stays
            response_headers["X-Replica"] = out["replica"]
            response_headers["X-Attempts"] = str(attempt + 1)  # more than 1: a replica died with the request
            return Response(out["body"], status_code=out["status"], headers=response_headers)
        raise ReplicaUnavailable(why + ("" if retryable else " (not retried: the request may have taken effect)"))
