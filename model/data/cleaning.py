"""A training set in COCO's conventions: the detector's boxes, mirrored labels fixed, joint offsets corrected.

`clean_set` takes a COCO-format set and the teacher's detections on its images (`lgm-pose teacher`) and returns
new annotations plus a `SetReport` (the per-set convention table, before and after). For every annotated person:
- the box is the teacher detector's box when a detection matches (by OKS or box IoU: the crop inference will
  make), otherwise the annotation box moved by the set's median annotation-to-detector transform;
- where the teacher's keypoints agree with the labels (OKS >= 0.5), they serve as the reference below:
- labels the teacher confidently sees mirrored are swapped back (whole body, then per pair);
- each joint's median offset from the teacher (up/out in torso lengths, `model.data.conventions`) is removed;
- labelled joints the teacher confidently contradicts keep a quarter of their weight;
- unlabelled joints the teacher is confident about become targets of weight `fill_weight`.
A set without a teacher (a validation split) gets only the offsets fitted on its training split.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from model.data import conventions as conv
from model.data.geometry import box_to_center_size
from model.data.matching import Detections, annotation_box, match_persons

CONTRADICTED_WEIGHT = 0.25
STEPS = frozenset({"boxes", "conventions", "fill"})
MIN_OKS = 0.5  # a matched detection whose keypoints agree this well with the labels serves as the teacher
CROP_ASPECT_WH = 192 / 256  # the COCO configs' input aspect: the crop-scale statistic uses the network's crop


@dataclass
class SetReport:
    name: str
    persons: int = 0
    matched: int = 0  # persons with a detector box
    agreeing: int = 0  # of them, persons whose teacher keypoints agree with the labels (OKS >= MIN_OKS)
    whole_swaps: int = 0
    pair_swaps: Counter = field(default_factory=Counter)
    pairs_measured: Counter = field(default_factory=Counter)
    contradicted: int = 0
    filled: int = 0
    crop_scale: tuple[float, float] = (float("nan"), float("nan"))  # median shoulder-to-ankle / crop height
    box_extent: tuple[float, float] = (float("nan"), float("nan"))  # median box height / labelled joint extent
    offsets_before: np.ndarray | None = None  # (17, 2) median label-minus-teacher, torso lengths
    offsets_after: np.ndarray | None = None
    measured: np.ndarray | None = None  # (17,) persons per joint
    correction: np.ndarray | None = None  # (17, 2) applied (NaN: none)
    box_transform: dict | None = None  # annotation box -> detector box: median and robust std


def keypoints_of(ann: dict) -> np.ndarray:
    """(17, 3) x, y and the label weight (0 unlabelled; `keypoint_weights` where given)."""
    k = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    w = (k[:, 2] > 0).astype(np.float64)
    if "keypoint_weights" in ann:
        w = w * np.asarray(ann["keypoint_weights"], dtype=np.float64)
    return np.c_[k[:, :2], w]


def crop_scale(kpts: np.ndarray, box_xyxy: np.ndarray) -> float:
    """Shoulder-to-ankle distance over the crop's height (the network's aspect, padding 1.25); NaN if unlabelled.

    The distance runs between the midpoints of the labelled shoulders and ankles, whatever the pose.
    """
    if not (kpts[[5, 6], 2] > 0).any() or not (kpts[[15, 16], 2] > 0).any():
        return float("nan")
    top = kpts[[5, 6], :2][kpts[[5, 6], 2] > 0].mean(0)
    bottom = kpts[[15, 16], :2][kpts[[15, 16], 2] > 0].mean(0)
    x1, y1, x2, y2 = box_xyxy
    _, size = box_to_center_size([x1, y1, x2 - x1, y2 - y1], CROP_ASPECT_WH)
    return float(np.linalg.norm(bottom - top) / size[1])


def box_extent(kpts: np.ndarray, box_xyxy: np.ndarray) -> float:
    ys = kpts[kpts[:, 2] > 0, 1]
    return float((box_xyxy[3] - box_xyxy[1]) / (ys.max() - ys.min())) if len(ys) >= 4 and np.ptp(ys) > 1 else np.nan


def box_deltas(ann_box: np.ndarray, det_box: np.ndarray) -> np.ndarray:
    """(dx, dy, log w ratio, log h ratio): the detector box's centre shift (in annotation box sizes) and scale."""
    aw, ah = ann_box[2] - ann_box[0], ann_box[3] - ann_box[1]
    dw, dh = det_box[2] - det_box[0], det_box[3] - det_box[1]
    return np.array([((det_box[0] + det_box[2]) - (ann_box[0] + ann_box[2])) / 2 / aw,
                     ((det_box[1] + det_box[3]) - (ann_box[1] + ann_box[3])) / 2 / ah,
                     np.log(dw / aw), np.log(dh / ah)])


def fit_box_transform(deltas: list[np.ndarray]) -> dict:
    """Median annotation-to-detector transform and its robust spread (1.4826 MAD): the detector's errors."""
    if len(deltas) < conv.MIN_PERSONS:
        return {"median": [0.0] * 4, "std": [0.0] * 4, "pairs": len(deltas)}
    d = np.stack(deltas)
    med = np.median(d, 0)
    std = 1.4826 * np.median(np.abs(d - med), 0)
    return {"median": np.round(med, 4).tolist(), "std": np.round(std, 4).tolist(), "pairs": len(deltas)}


def transform_box(box: np.ndarray, median: list[float]) -> np.ndarray:
    dx, dy, lw, lh = median
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2 + dx * w, (box[1] + box[3]) / 2 + dy * h
    w, h = w * np.exp(lw), h * np.exp(lh)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def measure_offsets(labels: dict[int, np.ndarray], teacher: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    per_person = []
    for ann_id, t in teacher.items():
        frame = conv.body_frame(labels[ann_id])
        if frame is not None:
            per_person.append(conv.offsets(labels[ann_id], t, frame))
    return conv.fit_offsets(per_person)


def clean_set(name: str, coco: dict, detections: dict[int, Detections] | None,
              correction: np.ndarray | None = None, fill_weight: float = 0.5,
              steps: frozenset[str] = STEPS) -> tuple[list[dict], SetReport]:
    """Cleaned annotations of one set and its report (see the module docstring).

    `steps` (for ablations): "boxes" (the detector's boxes), "conventions" (swaps, offsets, contradicted joints),
    "fill" (teacher fill-ins); the table is measured either way.
    """
    report = SetReport(name)
    anns = [a for a in coco["annotations"] if not a.get("iscrowd", 0)]
    by_image: dict[int, list[dict]] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    labels = {a["id"]: keypoints_of(a) for a in anns}
    human = {a["id"]: labels[a["id"]][:, 2] > 0 for a in anns}  # joints a person labelled (not filled in)
    teacher: dict[int, np.ndarray] = {}
    det_box: dict[int, np.ndarray] = {}
    for image_id, group in by_image.items():
        dets = (detections or {}).get(image_id)
        if dets is None or not len(dets):
            continue
        for ann_id, (d, oks) in match_persons(group, dets).items():
            det_box[ann_id] = dets.boxes[d]
            if oks >= MIN_OKS:  # the teacher's keypoints are used only where they agree with the labels
                teacher[ann_id] = dets.keypoints[d]
    report.persons, report.matched, report.agreeing = len(anns), len(det_box), len(teacher)
    report.offsets_before, report.measured = measure_offsets(labels, teacher)
    # 1. mirrored labels
    for ann_id, t in (teacher if "conventions" in steps else {}).items():
        frame = conv.body_frame(t)
        scale = frame.torso if frame else (det_box[ann_id][3] - det_box[ann_id][1]) / 3
        report.pairs_measured.update(conv.swap_costs(labels[ann_id], t).keys())
        whole, pairs = conv.swapped_pairs(labels[ann_id], t, scale)
        if whole:
            labels[ann_id] = conv.mirror(labels[ann_id])
            report.whole_swaps += 1
        labels[ann_id] = conv.mirror(labels[ann_id], pairs)
        report.pair_swaps.update(pairs)
    # 2. joint offsets: fitted here (teacher) or given (a validation split of the same source)
    if correction is None:
        correction, _ = measure_offsets(labels, teacher)
    if "conventions" not in steps:
        correction = np.full_like(correction, np.nan)
    report.correction = correction
    for ann_id in labels:
        frame = conv.body_frame(labels[ann_id])
        if frame is not None:
            labels[ann_id] = conv.apply_offsets(labels[ann_id], correction, frame)
    report.offsets_after, _ = measure_offsets(labels, teacher)
    # 3. contradicted joints, 4. teacher fill-ins
    area = {a["id"]: float(a.get("area") or a["bbox"][2] * a["bbox"][3]) for a in anns}
    for ann_id, t in teacher.items():
        bad = conv.contradicted(labels[ann_id], t, area[ann_id]) & human[ann_id] & ("conventions" in steps)
        labels[ann_id][bad, 2] *= CONTRADICTED_WEIGHT
        report.contradicted += int(bad.sum())
        fill = (labels[ann_id][:, 2] == 0) & (t[:, 2] >= conv.CONFIDENT) & ("fill" in steps)
        labels[ann_id][fill] = np.c_[t[fill, :2], np.full(fill.sum(), fill_weight)]
        report.filled += int(fill.sum())
    # 5. boxes
    report.box_transform = fit_box_transform([box_deltas(annotation_box(a), det_box[a["id"]])
                                              for a in anns if a["id"] in det_box])
    cleaned, scales, extents = [], [], []
    for a in anns:
        old = annotation_box(a)
        new = det_box.get(a["id"]) if "boxes" in steps else old
        if new is None:
            new = transform_box(old, report.box_transform["median"]) if detections is not None else old
        kpts = labels[a["id"]]
        scales.append((crop_scale(keypoints_of(a), old), crop_scale(kpts, new)))
        extents.append((box_extent(keypoints_of(a), old), box_extent(kpts, new)))
        cleaned.append(cleaned_annotation(a, kpts, new, a["id"] in det_box and "boxes" in steps))
    with np.errstate(all="ignore"):
        report.crop_scale = tuple(float(v) for v in np.nanmedian(np.array(scales), 0))
        report.box_extent = tuple(float(v) for v in np.nanmedian(np.array(extents), 0))
    return cleaned, report


def cleaned_annotation(ann: dict, kpts: np.ndarray, box: np.ndarray, detector_box: bool) -> dict:
    """The annotation with its new keypoints (v=2 where weighted), per-joint weights and box; the old box kept."""
    x1, y1, x2, y2 = (float(v) for v in box)
    labelled = kpts[:, 2] > 0
    flat = np.c_[np.where(labelled[:, None], kpts[:, :2], 0.0), np.where(labelled, 2, 0)].reshape(-1)
    return {**ann, "keypoints": [round(float(v), 2) for v in flat], "num_keypoints": int(labelled.sum()),
            "keypoint_weights": [round(float(w), 3) for w in kpts[:, 2]],
            "bbox": [x1, y1, x2 - x1, y2 - y1], "bbox_annotated": ann["bbox"],
            "box_source": "detector" if detector_box else "annotation"}
