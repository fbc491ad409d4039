"""One WS /ws/pose stream: video frames in, tracked and smoothed poses out, latest frame wins.

Protocol (see also app/static/demo.js):
- client -> server, binary: one JPEG/PNG/WebP/BMP image per message (at most `ws_max_frame_bytes`, else the
  socket closes with 1009).
- client -> server, text JSON control: any of {"det_conf", "kpt_thr", "max_persons", "pose_source", "smoothing",
  "reset"} (answered by {"type": "config", ...}) and/or {"frame_id", "timestamp_ms"} for the next binary frame.
- server -> client: {"type": "hello", "params" (with the default pose_source), "pose_sources", ...} on connect;
  {"type": "pose", "frame_id", "width", "height", "persons": [{"track_id", "box", "box_score", "pose_score",
  "source", "keypoints": [[x, y, score], ...]}], "source", "source_note", "detected", "latency_ms", "timing_ms",
  "smoothing", "dropped", "totals"} per processed frame; {"type": "error",
  "frame_id"?, "error": {"type", "message"}, "dropped", "totals"} for a bad frame or control message.

Each stream has a receive task that always reads the socket and keeps only the newest unprocessed frame in a
one-slot mailbox (an older one is dropped and counted, so a client sending faster than it is served sees
dropped frames, not a growing delay) and a process task that runs the shared pipeline (priority live, same
batcher as POST /pose, the stream as one client at the compute gate) on the newest frame. Memory and latency
per stream are bounded.

Pose sources (app.pipeline.sources): with `detector` every frame is detected (there are no LGM-Pose keypoints to
follow boxes with in between); with `lgm` and `fused` the detector runs every `ws_detect_every` frames, and on the
frames between, whose boxes are followed from the last frame, `fused` has no detector keypoints: those persons
come from `lgm` and say so (`source`, `source_note`). Tracking and smoothing are the same for every source.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from app.core.errors import BadParameter, ServiceError, WsClose, error_body
from app.core.settings import Settings
from app.pipeline.batcher import PRIORITY_LIVE
from app.pipeline.pose_pipeline import PoseParams
from app.pipeline.request import parse_option
from app.pipeline.results import PoseResult
from app.pipeline.sources import SOURCES, parse_source
from app.state import ServiceState
from app.stream.propagation import DetectionSchedule
from app.stream.smoothing import TrackSmoother
from app.stream.tracking import IouTracker

log = logging.getLogger("lgm_pose.ws")


@dataclass
class Frame:
    data: bytes
    frame_id: int
    timestamp_s: float  # the client's timestamp if given, else the arrival time (seconds)
    received: float  # perf_counter at arrival


@dataclass
class StreamState:
    """Per-connection state shared by the receive and process tasks (one event loop: no locks needed)."""

    det_conf: float
    kpt_thr: float
    max_persons: int
    smoothing: bool
    tracker: IouTracker
    smoother: TrackSmoother
    pose_source: str = "lgm"
    schedule: DetectionSchedule = field(default_factory=DetectionSchedule)
    slot: Frame | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    next_frame_id: int | None = None
    next_timestamp_s: float | None = None
    counter: int = 0
    received: int = 0
    processed: int = 0
    dropped: int = 0
    dropped_since_answer: int = 0
    errors: int = 0

    def params(self) -> dict[str, Any]:
        return {"det_conf": self.det_conf, "kpt_thr": self.kpt_thr, "max_persons": self.max_persons,
                "pose_source": self.pose_source, "smoothing": self.smoothing}

    def totals(self) -> dict[str, int]:
        return {"received": self.received, "processed": self.processed, "dropped": self.dropped,
                "errors": self.errors}


def stream_error(type_: str, message: str) -> dict[str, Any]:
    """A stream's error message: {"type": "error", "error": {"type", "message"}} (app.core.errors.error_body)."""
    return {"type": "error", **error_body(type_, message)}


def encode(msg: dict[str, Any]) -> str:
    """A server message as compact, strict JSON (no NaN)."""
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


class ControlError(ValueError):
    """A control message the server cannot apply."""


def apply_control(st: StreamState, msg: Any, settings: Settings, sources: Sequence[str] = SOURCES) -> bool:
    """Apply a JSON control message; True when it changed parameters (the client gets a config answer).

    Pose options are validated by the same rule as POST /pose's (`parse_option`); all or nothing.
    """
    if not isinstance(msg, dict):
        raise ControlError("a control message is a JSON object")
    try:
        options: dict[str, Any] = {k: parse_option(k, msg[k], settings)
                                   for k in ("det_conf", "kpt_thr", "max_persons") if k in msg}
        if "pose_source" in msg:
            options["pose_source"] = parse_source(msg["pose_source"])
            if options["pose_source"] not in sources:
                raise BadParameter(f"pose_source {options['pose_source']!r} is not served here (no fitted fusion "
                                   f"rule); served: {', '.join(sources)}")
    except BadParameter as exc:
        raise ControlError(exc.message) from None
    if "smoothing" in msg and not isinstance(msg["smoothing"], bool):
        raise ControlError("smoothing must be true or false")
    frame_id, timestamp = msg.get("frame_id"), msg.get("timestamp_ms")
    if frame_id is not None and not (isinstance(frame_id, int) and not isinstance(frame_id, bool)
                                     and 0 <= frame_id < 2**53):
        raise ControlError("frame_id must be a whole number in [0, 2^53)")
    if timestamp is not None and not (isinstance(timestamp, int | float) and not isinstance(timestamp, bool)
                                      and math.isfinite(timestamp)):
        raise ControlError("timestamp_ms must be a finite number")
    for key, value in options.items():
        setattr(st, key, value)
    if "pose_source" in options:  # another source: follow nothing from the last one
        st.schedule.reset()
    if "smoothing" in msg:
        st.smoothing = msg["smoothing"]
        st.smoother.reset()
    if msg.get("reset"):
        st.tracker.reset()
        st.smoother.reset()
        st.schedule.reset()
    if frame_id is not None:
        st.next_frame_id = frame_id
    if timestamp is not None:
        st.next_timestamp_s = float(timestamp) / 1000.0
    return any(k in msg for k in ("det_conf", "kpt_thr", "max_persons", "pose_source", "smoothing", "reset"))


def pose_message(st: StreamState, frame: Frame, result: PoseResult, latency_ms: float) -> dict[str, Any]:
    """Track the persons, smooth their keypoints (if on) and build the answer for one frame."""
    poses = result.poses
    ids = st.tracker.update(np.asarray(poses.boxes, dtype=np.float64).reshape(-1, 4))
    if st.smoothing:
        st.smoother.retain(st.tracker.live_ids())
    keypoints = [st.smoother.smooth(tid, poses.keypoints[i], frame.timestamp_s) if st.smoothing
                 else poses.keypoints[i] for i, tid in enumerate(ids)]
    return result.to_stream(frame.frame_id, ids, keypoints, latency_ms, st.smoothing)


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

    async def send(self, msg: dict[str, Any]) -> None:
        if msg["type"] in ("pose", "error"):
            msg["dropped"] = self.st.dropped_since_answer
            self.st.dropped_since_answer = 0
            msg["totals"] = self.st.totals()
        await self.ws.send_text(encode(msg))

    async def send_error(self, type_: str, message: str, frame_id: int | None = None) -> None:
        self.st.errors += 1
        self.metrics.errors.labels(type=type_).inc()
        msg = stream_error(type_, message)
        if frame_id is not None:
            msg["frame_id"] = frame_id
        await self.send(msg)

    async def receive_loop(self) -> None:
        """Read the socket forever; keep only the newest frame; stop on disconnect or an oversized frame."""
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
                    self.close_code = WsClose.TOO_BIG
                    await self.ws.close(WsClose.TOO_BIG, f"frame of {len(data)} bytes exceeds "
                                                       f"{self.settings.ws_max_frame_bytes}")
                    return
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
            except Exception as exc:  # keep the stream alive; the error goes to the client and the log
                log.exception("ws frame %s failed", frame.frame_id)
                await self.send_error("internal_error", f"{type(exc).__name__}: {exc}", frame.frame_id)
                continue
            del image
            st.processed += 1
            self.metrics.ws_frames_processed.inc()
            latency_ms = (time.perf_counter() - frame.received) * 1000.0
            message = pose_message(st, frame, result, latency_ms)
            message["detected"] = propagated is None  # False: boxes from the last frame's keypoints
            await self.send(message)

    async def run(self) -> None:
        """Hello, then both loops until either ends (disconnect, 1009, send failure); cancel the other."""
        dataset = self.service.meta.dataset
        await self.send({"type": "hello", "keypoint_names": list(dataset.joint_names), "skeleton": dataset.skeleton,
                         "params": self.st.params(), "pose_sources": self.sources,
                         "max_frame_bytes": self.settings.ws_max_frame_bytes})
        tasks = [asyncio.create_task(self.receive_loop(), name="ws-receive"),
                 asyncio.create_task(self.process_loop(), name="ws-process")]
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
