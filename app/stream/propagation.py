"""Streams that do not detect every frame: between detections each person's box comes from its last keypoints.

The approach of RTMPose's and MediaPipe's video pipelines: run the person detector every `every` frames;
in between, the box of every person of the last frame is the extent of its confident keypoints, enlarged, and
the top-down path runs on those boxes alone. After a detection only the persons whose pose score reaches
`min_pose_score` are followed (weak ones wait for the next detection); detect again at once when a followed
person's pose score falls below it (a lost or drifting track) or nobody is left to follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.pipeline.results import PoseResult

KEYPOINT_MARGIN = 0.15  # each side, as a share of the keypoints' extent (joints lie inside the body outline)
MIN_KEYPOINTS = 3


def box_from_keypoints(keypoints: np.ndarray, scores: np.ndarray, threshold: float, fallback: np.ndarray,
                       image_wh: tuple[int, int]) -> np.ndarray:
    """x1y1x2y2 around the keypoints scored at or above `threshold`, enlarged; `fallback` with too few of them."""
    pts = keypoints[scores >= threshold]
    if len(pts) < MIN_KEYPOINTS:
        return np.asarray(fallback, dtype=np.float64)
    lo, hi = pts.min(0), pts.max(0)
    pad = (hi - lo) * KEYPOINT_MARGIN + 2.0
    w, h = image_wh
    return np.array([max(0.0, lo[0] - pad[0]), max(0.0, lo[1] - pad[1]),
                     min(w - 1.0, hi[0] + pad[0]), min(h - 1.0, hi[1] + pad[1])])


@dataclass
class DetectionSchedule:
    """Per stream: whether the next frame runs the detector, and the boxes to use when it does not."""

    every: int = 1
    min_pose_score: float = 0.4
    keypoint_threshold: float = 0.3
    since_detection: int = 0
    boxes: np.ndarray | None = None
    box_scores: np.ndarray | None = None
    detections: int = 0

    def next_boxes(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Boxes for the next frame, or None: run the detector."""
        if self.every <= 1 or self.boxes is None or self.since_detection + 1 >= self.every:
            return None
        return self.boxes, self.box_scores

    def update(self, result: PoseResult, detected: bool) -> None:
        """Remember the poses to follow; forget them all (detect next) when a followed person is lost."""
        self.detections += int(detected)
        self.since_detection = 0 if detected else self.since_detection + 1
        p = result.poses
        strong = np.flatnonzero(p.pose_scores >= self.min_pose_score)
        if not len(strong) or (not detected and len(strong) < len(p)):
            self.boxes = self.box_scores = None
            return
        wh = (result.width, result.height)
        self.boxes = np.array([box_from_keypoints(p.keypoints[i], p.joint_scores[i], self.keypoint_threshold,
                                                  p.boxes[i], wh) for i in strong])
        self.box_scores = np.array([float(p.box_scores[i]) for i in strong])

    def reset(self) -> None:
        self.boxes = self.box_scores = None
