"""Annotated persons matched to the teacher's detections on the same image (by OKS on labelled joints, or IoU).

A match is what lets the training data take the detector's box for a person (the crop inference makes), fill its
unlabelled joints and compare its labels with the teacher's conventions. Mirrored labels (left and right swapped)
still match: OKS is taken against the detection as it is and mirrored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.data.datasets import COCO
from model.data.geometry import box_iou


@dataclass(frozen=True)
class Detections:
    """The teacher's persons on one image: boxes (N, 4) x1y1x2y2, scores (N,), keypoints (N, 17, 3) x, y, conf."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[list[float]]) -> Detections:
        if not len(rows):
            return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, COCO.num_joints, 3)))
        arr = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        return cls(arr[:, :4], arr[:, 4], arr[:, 5:].reshape(len(rows), -1, 3))

    def __len__(self) -> int:
        return len(self.scores)


def read_detections(path: str | Path) -> dict[int, Detections]:
    """Image id -> the teacher's detections on it, from the file `lgm-pose teacher` writes."""
    raw = json.loads(Path(path).read_text())
    if "detections" not in raw:
        raise ValueError(f"{path} is not a teacher detections file (re-run `lgm-pose teacher`)")
    return {int(k): Detections.from_rows(v) for k, v in raw["detections"].items()}


def oks_on_labelled(gt: np.ndarray, pred: np.ndarray, area: float) -> float:
    """OKS between labelled GT joints (v>0) and predicted joints (COCO sigmas)."""
    vis = gt[:, 2] > 0
    if not vis.any():
        return 0.0
    d2 = ((gt[vis, :2] - pred[vis, :2]) ** 2).sum(1)
    var = (2 * COCO.sigma_array()[vis]) ** 2
    return float(np.mean(np.exp(-d2 / (2 * max(area, 1.0) * var))))


def annotation_box(ann: dict) -> np.ndarray:
    x, y, w, h = (float(v) for v in ann["bbox"])
    return np.array([x, y, x + w, y + h])


def match_persons(annotations: list[dict], detections: Detections, min_oks: float = 0.5,
                  min_iou: float = 0.5) -> dict[int, tuple[int, float]]:
    """Annotation id -> (detection index, OKS), greedy by agreement, one detection per annotation.

    A pair matches when the OKS over the labelled joints reaches `min_oks` (the better of the detection as it is
    and mirrored, so a person labelled left-for-right still matches) or the boxes overlap by `min_iou`. The OKS
    comes back so that callers trust the teacher's keypoints only where they agree with the labels; the box of
    a box-only match is still the detector's box for that person.
    """
    flip = COCO.flip_permutation()
    pairs = []
    for ann in annotations:
        gt = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        area = float(ann.get("area") or ann["bbox"][2] * ann["bbox"][3])
        box = annotation_box(ann)
        for d in range(len(detections)):
            pred = detections.keypoints[d]
            oks = max(oks_on_labelled(gt, pred, area), oks_on_labelled(gt, pred[flip], area))
            iou = box_iou(box, detections.boxes[d])
            if oks >= min_oks or iou >= min_iou:
                pairs.append((oks + iou, ann["id"], d, oks))
    matched: dict[int, tuple[int, float]] = {}
    used: set[int] = set()
    for _, ann_id, d, oks in sorted(pairs, key=lambda p: -p[0]):
        if ann_id not in matched and d not in used:
            matched[ann_id] = (d, oks)
            used.add(d)
    return matched
