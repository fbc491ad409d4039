"""A small IoU tracker: greedy matching of detections to tracks (best IoU first), constant-velocity box
prediction, tracks kept for `max_age` frames without a match. Track ids depend only on the boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of x1y1x2y2 boxes: (N, 4) x (M, 4) -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, col) pairs taken in descending IoU order, each row and column at most once, IoU >= threshold."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    rows, cols = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return pairs


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # last matched box, x1y1x2y2
    velocity: np.ndarray  # box change per frame (smoothed)
    hits: int = 1
    misses: int = 0

    def predicted(self) -> np.ndarray:
        """Where the box should be in the next frame (constant velocity over the frames missed)."""
        return self.box + self.velocity * (self.misses + 1)


class IouTracker:
    """Assigns a stable id to each detection; `update(boxes)` returns one id per box, in order."""

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 30) -> None:
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks.clear()

    def update(self, boxes: np.ndarray) -> list[int]:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        preds = np.array([t.predicted() for t in self.tracks]).reshape(-1, 4)
        lasts = np.array([t.box for t in self.tracks]).reshape(-1, 4)
        # the better of the predicted and the last box: prediction helps steady motion, hurts erratic motion
        pairs = greedy_match(np.maximum(iou_matrix(preds, boxes), iou_matrix(lasts, boxes)), self.iou_threshold)
        ids = [0] * len(boxes)
        matched_tracks: set[int] = set()
        for ti, di in pairs:
            track = self.tracks[ti]
            step = (boxes[di] - track.box) / (track.misses + 1)
            track.velocity = 0.5 * track.velocity + 0.5 * step
            track.box = boxes[di].copy()
            track.hits += 1
            track.misses = 0
            ids[di] = track.track_id
            matched_tracks.add(ti)
        for ti, track in enumerate(self.tracks):
            if ti not in matched_tracks:
                track.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_age]
        for di in range(len(boxes)):
            if ids[di] == 0:
                track = Track(self._next_id, boxes[di].copy(), np.zeros(4))
                self._next_id += 1
                self.tracks.append(track)
                ids[di] = track.track_id
        return ids

    def live_ids(self) -> set[int]:
        return {t.track_id for t in self.tracks}
