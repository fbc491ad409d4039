"""WS /ws/pose (one `PoseStream` per connection, app/stream/) and the browser demo page at /."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.websockets import WebSocketDisconnect, WebSocketState

from app.core.errors import NotReady, WsClose
from app.core.security import Unauthorized, check_key, origin_allowed, selected_subprotocol
from app.deps import ServiceDep
from app.stream.session import PoseStream, encode, stream_error

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
router = APIRouter(tags=["stream"])


@router.websocket("/ws/pose")
async def ws_pose(websocket: WebSocket, service: ServiceDep) -> None:
    """Pose estimation over a video stream (protocol: app/stream/session.py)."""
    metrics, settings = service.metrics, service.settings
    try:
        check_key(websocket, settings)
    except Unauthorized:
        await websocket.close(WsClose.POLICY, "missing or wrong API key")  # before accept: the handshake gets 403
        return
    if not origin_allowed(websocket, settings):
        await websocket.close(WsClose.POLICY, "origin not allowed")
        return
    await websocket.accept(selected_subprotocol(websocket.scope))  # `lgm-pose`, never the key
    try:
        service.ready_pipeline()
    except NotReady as exc:
        await websocket.send_text(encode(stream_error(exc.type, exc.message)))
        await websocket.close(WsClose.TRY_AGAIN, "models are loading")
        return
    per_client: Counter[str] = websocket.app.state.ws_streams_per_client
    who = websocket.client.host if websocket.client else "-"
    if service.ws_streams >= settings.ws_max_streams:
        await websocket.close(WsClose.TRY_AGAIN, f"too many streams ({service.ws_streams}, the limit)")
        return
    if per_client[who] >= settings.ws_max_streams_per_client:
        await websocket.close(WsClose.TRY_AGAIN, f"too many streams from this client ({per_client[who]}, the limit)")
        return
    service.ws_streams += 1
    per_client[who] += 1
    metrics.ws_streams_active.inc()
    stream = PoseStream(websocket, service)
    try:
        await stream.run()
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away during hello
    finally:
        service.ws_streams -= 1
        per_client[who] -= 1
        if not per_client[who]:
            del per_client[who]
        metrics.ws_streams_active.dec()
        if stream.close_code is None and websocket.client_state == WebSocketState.CONNECTED:
            try:
                await websocket.close()
            except (RuntimeError, OSError):
                pass


@router.get("/", include_in_schema=False)
async def demo_page() -> FileResponse:
    """The browser demo (webcam or video file -> WS /ws/pose -> skeletons drawn over the video)."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def install(app: FastAPI) -> None:
    """Add WS /ws/pose, the demo page at / and its files under /static to `app`."""
    app.state.ws_streams_per_client = Counter()  # open streams per client address
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
