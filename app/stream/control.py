"""A stream's state and its messages: the per-connection state, control messages (validated as POST /pose's
options) and the JSON the server sends (protocol: app/stream/session.py)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.core.errors import BadParameter, error_body
from app.core.settings import Settings
from app.pipeline.request import parse_option
from app.pipeline.results import PoseResult
from app.pipeline.sources import SOURCES, parse_source
from app.stream.propagation import DetectionSchedule
from app.stream.smoothing import TrackSmoother
from app.stream.tracking import IouTracker


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
