"""Streams that detect every N frames, on real street footage: the detector runs less, the keypoints stay close to
detect-every-frame (matched persons, median over body joints, as a share of the box height)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

from live_server import LiveServer  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from app.core.settings import DEFAULT_POSE_WEIGHTS, Settings  # noqa: E402
from bench.stream_load import video_frames  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
FRAMES = 12


def _frames(data_root: Path) -> list[bytes]:
    return video_frames(data_root / "videos" / "street_pedestrians.mp4", FRAMES)


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


@pytest.mark.skipif(not DEFAULT_POSE_WEIGHTS.is_file(), reason="needs the shipped weights")
def test_detect_every_third_frame_agrees_with_every_frame(data_root: Path) -> None:
    frames = _frames(data_root)
    live = LiveServer(Settings(ws_detect_every=3, ws_smoothing=False, torch_threads=2))
    try:
        answers = []
        with connect(live.url.replace("http", "ws") + "/ws/pose", max_size=None) as ws:
            json.loads(ws.recv(timeout=30))
            for data in frames:  # one frame at a time: none is dropped
                ws.send(data)
                answers.append(json.loads(ws.recv(timeout=60)))
        reference = [httpx.post(live.url + "/pose", content=d, headers={"Content-Type": "image/jpeg"},
                                timeout=60).json() for d in frames]
    finally:
        live.stop()
    detected = [a["detected"] for a in answers]
    assert detected[0] and detected.count(False) >= FRAMES // 3, detected
    body = slice(5, 17)
    errors = []
    for answer, ref in zip(answers, reference, strict=True):
        if answer["detected"]:
            continue
        for person in answer["persons"]:
            ious = [_iou(person["box"], r["box"]) for r in ref["persons"]]
            if not ious or max(ious) < 0.5:
                continue
            match = ref["persons"][int(np.argmax(ious))]
            ours = np.array([k[:2] for k in person["keypoints"]])[body]
            theirs = np.array([[k["x"], k["y"]] for k in match["keypoints"]])[body]
            height = match["box"][3] - match["box"][1]
            errors.append(float(np.median(np.linalg.norm(ours - theirs, axis=1))) / height)
    print(f"propagated frames {detected.count(False)}/{FRAMES}, matched persons {len(errors)}, "
          f"median error / box height {np.median(errors):.3f}")
    assert len(errors) >= 5 and float(np.median(errors)) < 0.05
