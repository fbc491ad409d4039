"""One WS /ws/pose stream: video frames in, tracked and smoothed poses out, latest frame wins.

Protocol (see also app/static/demo.js):
- client -> server, binary: one JPEG/PNG/WebP/BMP image per message (at most `ws_max_frame_bytes`, else the
  socket closes with 1009).
- client -> server, text JSON control: any of {"det_conf", "kpt_thr", "max_persons", "pose_source", "smoothing",
  "reset"} (answered by {"type": "config", ...}) and/or {"frame_id", "timestamp_ms"} for the next binary frame;
  over `ws_max_text_bytes` it is refused (bad_control) unparsed.
- server -> client: {"type": "hello", "params" (with the default pose_source), "pose_sources", ...} on connect;
  {"type": "pose", "frame_id", "width", "height", "persons": [{"track_id", "box", "box_score", "pose_score",
  "source", "keypoints": [[x, y, score], ...]}], "source", "source_note", "detected", "latency_ms", "timing_ms",
  "smoothing", "dropped", "totals"} per processed frame; {"type": "error",
  "frame_id"?, "error": {"type", "message"}, "dropped", "totals"} for a bad frame or control message.

Each stream has a receive task that always reads the socket and keeps only the newest unprocessed frame in a
one-slot mailbox (an older one is dropped and counted, so a client sending faster than it is served sees
dropped frames, not a growing delay) and a process task that runs the shared pipeline (priority live, same
batcher as POST /pose, the stream as one client at the compute gate) on the newest frame. Memory and latency
per stream are bounded. A stream with no frame and no answer for `ws_idle_timeout_s` is closed (1008), and a
frame that fails unexpectedly is answered with `internal_error` and an id to find it in the log, never the
library's own text. When the client goes, the frame in progress is cancelled with the stream's tasks.

Pose sources (app.pipeline.sources): with `detector` every frame is detected (there are no LGM-Pose keypoints to
follow boxes with in between); with `lgm` and `fused` the detector runs every `ws_detect_every` frames, and on the
frames between, whose boxes are followed from the last frame, `fused` has no detector keypoints: those persons
come from `lgm` and say so (`source`, `source_note`). Tracking and smoothing are the same for every source.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from app.core.errors import ServiceError, WsClose
from app.pipeline.batcher import PRIORITY_LIVE
from app.pipeline.pose_pipeline import PoseParams
from app.state import ServiceState
from app.stream.control import (  # noqa: F401 (ControlError, StreamState, apply_control: the stream's API)
    ControlError,
    Frame,
    StreamState,
    apply_control,
    encode,
    pose_message,
    stream_error,
)
from app.stream.propagation import DetectionSchedule
from app.stream.smoothing import TrackSmoother
from app.stream.tracking import IouTracker

log = logging.getLogger("lgm_pose.ws")


class PoseStream:
    """One WebSocket connection: a receive task and a process task around a one-frame mailbox."""

    def __init__(self, websocket: WebSocket, service: ServiceState) -> None:
        self.ws = websocket
        self.service = service
        s = self.service.settings
        self.settings = s
        self.metrics = self.service.metrics
        self.st = StreamState(
            det_conf=s.detector_conf, kpt_thr=s.kpt_score_threshold, max_persons=s.max_persons,
            pose_source=s.pose_source, smoothing=s.ws_smoothing,
            tracker=IouTracker(s.tracker_iou_threshold, s.tracker_max_age),
            smoother=TrackSmoother(s.one_euro_min_cutoff, s.one_euro_beta, s.one_euro_d_cutoff),
            schedule=DetectionSchedule(s.ws_detect_every, s.ws_redetect_pose_score, s.kpt_score_threshold))
        self.close_code: int | None = None
        self.sources = service.ready_pipeline().sources()
        self.client = object()  # its account at the compute gate (a token: the ledger never holds the stream)
        self.last_active = time.monotonic()  # the last frame received or answer sent (the idle clock)

    async def send(self, msg: dict[str, Any]) -> None:
        if msg["type"] in ("pose", "error"):
            msg["dropped"] = self.st.dropped_since_answer
            self.st.dropped_since_answer = 0
            msg["totals"] = self.st.totals()
        await self.ws.send_text(encode(msg))
        self.last_active = time.monotonic()

    async def send_error(self, type_: str, message: str, frame_id: int | None = None) -> None:
        self.st.errors += 1
        self.metrics.errors.labels(type=type_).inc()
        msg = stream_error(type_, message)
        if frame_id is not None:
            msg["frame_id"] = frame_id
        await self.send(msg)

    async def close(self, code: WsClose, reason: str) -> None:
        self.close_code = code
        await self.ws.close(code, reason)

    async def receive_loop(self) -> None:
        """Read the socket forever; keep only the newest frame; stop on disconnect or an oversized message."""
        st = self.st
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            data, text = msg.get("bytes"), msg.get("text")
            if data is not None:
                st.received += 1
                self.metrics.ws_frames_received.inc()
                if len(data) > self.settings.ws_max_frame_bytes:
                    await self.close(WsClose.TOO_BIG, f"frame of {len(data)} bytes exceeds "
                                                      f"{self.settings.ws_max_frame_bytes}")
                    return
                self.last_active = time.monotonic()
                if st.next_frame_id is not None:
                    frame_id, st.next_frame_id = st.next_frame_id, None
                else:
                    frame_id = st.counter
                st.counter = max(st.counter, frame_id) + 1
                now = time.perf_counter()
                ts, st.next_timestamp_s = (st.next_timestamp_s if st.next_timestamp_s is not None else now), None
                if st.slot is not None:  # latest frame wins: the unprocessed older one is dropped
                    st.dropped += 1
                    st.dropped_since_answer += 1
                    self.metrics.ws_frames_dropped.inc()
                st.slot = Frame(data, frame_id, ts, now)
                st.arrived.set()
            elif text is not None:
                if len(text) > self.settings.ws_max_text_bytes:  # characters: at least as many bytes
                    await self.send_error("bad_control", f"control message refused unread: over "
                                          f"{self.settings.ws_max_text_bytes} bytes")
                    continue
                try:
                    if apply_control(st, json.loads(text), self.settings, self.sources):
                        await self.send({"type": "config", "params": st.params()})
                except (json.JSONDecodeError, RecursionError, ValueError) as exc:  # ControlError is a ValueError
                    reason = str(exc) if isinstance(exc, ControlError) else f"not JSON ({type(exc).__name__})"
                    await self.send_error("bad_control", f"control message refused: {reason}")

    async def process_loop(self) -> None:
        """Take the newest frame, run the shared pipeline on it, answer; forever."""
        st, s = self.st, self.settings
        pipeline = self.service.ready_pipeline()
        while True:
            await st.arrived.wait()
            st.arrived.clear()
            frame, st.slot = st.slot, None
            if frame is None:
                continue
            try:  # the same decode and admission entry as POST /pose
                params = PoseParams(det_conf=st.det_conf, kpt_thr=st.kpt_thr, max_persons=st.max_persons,
                                    pose_source=st.pose_source)
                # between detections: boxes from the last keypoints (`detector`: every frame is detected)
                propagated = st.schedule.next_boxes() if st.pose_source != "detector" else None
                if propagated is not None:
                    params.boxes, params.box_scores = propagated
                image, result = await pipeline.estimate_bytes(frame.data, params, PRIORITY_LIVE, s.ws_max_frame_bytes,
                                                              client=self.client)  # the stream is one client
                st.schedule.update(result, detected=propagated is None)
            except ServiceError as exc:
                await self.send_error(exc.type, exc.message, frame.frame_id)
                continue
            except Exception:  # keep the stream alive; the details go to the log only
                error_id = uuid.uuid4().hex[:16]
                log.exception("ws frame %s failed (error id %s)", frame.frame_id, error_id)
                await self.send_error("internal_error", f"internal error on this frame; error id {error_id}",
                                      frame.frame_id)
                continue
            del image
            st.processed += 1
            self.metrics.ws_frames_processed.inc()
            latency_ms = (time.perf_counter() - frame.received) * 1000.0
            message = pose_message(st, frame, result, latency_ms)
            message["detected"] = propagated is None  # False: boxes from the last frame's keypoints
            await self.send(message)

    async def idle_watch(self) -> None:
        """Close the stream (1008) once it has had no frame and no answer for `ws_idle_timeout_s`."""
        timeout = self.settings.ws_idle_timeout_s
        while (left := self.last_active + timeout - time.monotonic()) > 0:
            await asyncio.sleep(left)
        await self.close(WsClose.POLICY, f"idle: no frame for {timeout:g} s")

    async def run(self) -> None:
        """Hello, then the loops until one ends (disconnect, 1009, idle, send failure); cancel the others, and with
        them the frame in progress."""
        dataset = self.service.meta.dataset
        await self.send({"type": "hello", "keypoint_names": list(dataset.joint_names), "skeleton": dataset.skeleton,
                         "params": self.st.params(), "pose_sources": self.sources,
                         "max_frame_bytes": self.settings.ws_max_frame_bytes})
        tasks = [asyncio.create_task(self.receive_loop(), name="ws-receive"),
                 asyncio.create_task(self.process_loop(), name="ws-process"),
                 asyncio.create_task(self.idle_watch(), name="ws-idle")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                exc = t.exception()
                if exc is not None and not isinstance(exc, (WebSocketDisconnect, RuntimeError, OSError)):
                    log.warning("ws stream task %s failed: %r", t.get_name(), exc)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.st.slot = None
