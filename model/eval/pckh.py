"""MPII PCKh: the metric (standard table) and an evaluation runner over the HRNet/MMPose MPII json.

Json entries: {image, center, scale, joints (16x2), joints_vis (16)}; coordinates are 1-based (Matlab),
box size = scale * 200 px. Head size: the standard 0.6 x head-box diagonal when an entry carries a
'headbox' [x1, y1, x2, y2] (the official annotation's head rectangle; that json lacks it, MMPose reads it
from mpii_gt_val.mat); otherwise the fallback is the head_top-upper_neck distance (factor 1.0, see
`head_sizes`), and a person with either of those joints unlabelled is left out and counted.

Table as in the official evaluation: Head = mean of head_top and upper_neck, the limbs average left and
right, Mean = correct / labelled over all joints except pelvis and thorax (a count-weighted mean).
HRNet/MMPose print head_top alone as 'Head'; `per_joint` lets one read either. `limb_mean` is the same over
the 12 limb joints only: the figure a COCO model and an MPII model share.

A COCO model is scored through `model.data.joint_mapping`: its 12 limb joints (and pelvis and thorax as
midpoints); upper_neck and head_top it cannot predict, so they and the Head column stay unscored (None) and
are listed in `unscored_joints`. The head size still comes from the ground truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model.data.datasets import MPII
from model.data.joint_mapping import LIMB_JOINTS, coco_to_mpii, scored_joints
from model.data.mpii import load_mpii, mpii_person
from model.eval.predict import ImagePersons, ProgressFn, StopFn, predict_images
from model.inference.runners import as_runner
from model.inference.topdown import ScoringRule, TopDown

MPII_NAMES = MPII.joint_names

HEAD_BOX_FACTOR = 0.6  # SC_BIAS of the official evaluation
NECK_TOP_FACTOR = 1.0  # fallback: head size = head_top-upper_neck distance
J = {name: i for i, name in enumerate(MPII_NAMES)}
TABLE_GROUPS: dict[str, tuple[str, ...]] = {
    "Head": ("head_top", "upper_neck"),
    "Shoulder": ("left_shoulder", "right_shoulder"),
    "Elbow": ("left_elbow", "right_elbow"),
    "Wrist": ("left_wrist", "right_wrist"),
    "Hip": ("left_hip", "right_hip"),
    "Knee": ("left_knee", "right_knee"),
    "Ankle": ("left_ankle", "right_ankle"),
}
EXCLUDED_FROM_MEAN = ("pelvis", "thorax")


def head_sizes(gt_joints: np.ndarray, gt_visible: np.ndarray,
               headboxes: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Per-person head size (N,) and the rule used; NaN where it cannot be known.

    With head boxes (N, 4) [x1, y1, x2, y2]: 0.6 x diagonal. Without: head_top-upper_neck distance.
    """
    if headboxes is not None:
        boxes = np.asarray(headboxes, dtype=np.float64)
        return HEAD_BOX_FACTOR * np.linalg.norm(boxes[:, 2:4] - boxes[:, 0:2], axis=1), "headbox"
    top, neck = J["head_top"], J["upper_neck"]
    size = NECK_TOP_FACTOR * np.linalg.norm(gt_joints[:, top] - gt_joints[:, neck], axis=1)
    known = (gt_visible[:, top] > 0) & (gt_visible[:, neck] > 0) & (size > 0)
    return np.where(known, size, np.nan), "head_top-upper_neck distance"


def _number(value: float) -> float | None:
    """JSON-able: NaN (no labelled joint) becomes None."""
    return None if np.isnan(value) else float(value)


def pckh(pred: np.ndarray, gt_joints: np.ndarray, gt_visible: np.ndarray, headboxes: np.ndarray | None = None,
         threshold: float = 0.5, scored: tuple[str, ...] = MPII_NAMES) -> dict[str, Any]:
    """PCKh@threshold of predictions (N, 16, 2) against ground truth (N, 16, 2) with visibility (N, 16).

    Only the `scored` joints count (the others come out None). Returns {'table': {Head, Shoulder, ...,
    Ankle, Mean} in %, 'limb_mean', 'per_joint': {name: %}, 'counts': labelled joints per name, 'head_size':
    rule, 'persons': used, 'persons_without_head_size': left out}.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt_joints, dtype=np.float64)
    visible = np.asarray(gt_visible) > 0
    sizes, rule = head_sizes(gt, visible, headboxes)
    usable = ~np.isnan(sizes)
    visible = visible & usable[:, None] & np.isin(MPII_NAMES, scored)[None]
    dist = np.linalg.norm(pred - gt, axis=2) / np.where(usable, sizes, 1.0)[:, None]
    correct = (dist <= threshold) & visible
    counts, hits = visible.sum(0), correct.sum(0)
    per_joint = np.where(counts > 0, 100.0 * hits / np.maximum(counts, 1), np.nan)
    table = {group: _number(np.mean([per_joint[J[n]] for n in names])) for group, names in TABLE_GROUPS.items()}
    in_mean = np.array([n not in EXCLUDED_FROM_MEAN for n in MPII_NAMES])
    table["Mean"] = float(100.0 * hits[in_mean].sum() / max(counts[in_mean].sum(), 1))
    limbs = np.isin(MPII_NAMES, list(LIMB_JOINTS))
    limb_mean = float(100.0 * hits[limbs].sum() / max(counts[limbs].sum(), 1))
    return {"threshold": threshold, "table": table, "limb_mean": limb_mean,
            "per_joint": {n: _number(v) for n, v in zip(MPII_NAMES, per_joint, strict=True)},
            "counts": {n: int(c) for n, c in zip(MPII_NAMES, counts, strict=True)}, "head_size": rule,
            "persons": int(usable.sum()), "persons_without_head_size": int((~usable).sum())}


def evaluate_mpii(model_runner: Any, ann_file: str | Path, image_dir: str | Path,
                  flip: bool = False, batch_size: int = 32, progress: ProgressFn | None = None,
                  should_stop: StopFn | None = None, *, device: str = "cpu",
                  max_persons: int | None = None, threshold: float = 0.5) -> dict[str, Any]:
    """PCKh of an MPII model, or of a COCO model through the joint mapping, on an MPII json.

    Persons of unreadable images count as missed. Crops follow `model.data.mpii` (the training convention,
    read with MPII's conventions whatever the model); poses go through `TopDown` without OKS-NMS (each
    annotated person is scored on its own crop).
    """
    runner = as_runner(model_runner, device)
    model_joints = runner.meta.dataset.name
    scored = scored_joints(model_joints)  # ValueError for a model with no mapping to MPII
    topdown = TopDown(runner.meta, flip, ScoringRule(oks_nms_threshold=None))
    in_h, in_w = runner.meta.codec.input_hw
    entries = load_mpii(ann_file)[:max_persons]
    persons = [mpii_person(entry, in_w / in_h, MPII) for entry in entries]
    items = []
    for i, (entry, person) in enumerate(zip(entries, persons, strict=True)):
        box = np.r_[person.center - person.size / 2, person.center + person.size / 2]
        items.append(ImagePersons(entry["image"], person.center[None], person.size[None], box[None], np.ones(1),
                                  [{"index": i}]))
    pred = predict_images(topdown, runner, items, image_dir, batch_size, progress, should_stop)
    gt = np.array([p.joints for p in persons], dtype=np.float64).reshape(len(entries), 16, 2)
    vis = np.array([p.visible for p in persons], dtype=np.float64).reshape(len(entries), 16)
    full = np.full((len(entries), 16, 2), -1e6)  # missed persons: far away, never correct
    for item, poses in pred.images:
        keypoints = poses.keypoints[0]
        if model_joints != MPII.name:
            keypoints = coco_to_mpii(keypoints, np.ones(len(keypoints)))[0]
        full[item.meta[0]["index"]] = keypoints
    boxes = np.array([e["headbox"] for e in entries], dtype=np.float64) - MPII.coordinate_origin \
        if entries and all("headbox" in e for e in entries) else None
    result: dict[str, Any] = {
        "dataset": "mpii", "model_joints": model_joints,
        "unscored_joints": [n for n in MPII_NAMES if n not in scored],
        "ann_file": str(ann_file), "image_dir": str(image_dir), "flip": flip,
        "input_hw": [in_h, in_w], "cancelled": pred.cancelled, "table": None,
        "counts": {"persons": len(entries), "persons_predicted": pred.persons_predicted,
                   "skipped_images": len(pred.skipped_images)},
        "skipped_images": pred.skipped_images,
        "throughput": {"seconds": round(pred.seconds, 3),
                       "persons_per_s": round(pred.persons_predicted / pred.seconds, 2) if pred.seconds > 0 else 0.0},
    }
    if not pred.cancelled:
        score = pckh(full, gt, vis, boxes, threshold, scored)
        result.update(table=score["table"], limb_mean=score["limb_mean"], per_joint=score["per_joint"],
                      head_size=score["head_size"], summary=format_pckh_table(score["table"], threshold))
        result["counts"]["persons_without_head_size"] = score["persons_without_head_size"]
        result["counts"]["labelled_joints"] = score["counts"]
    return result


def format_pckh_table(table: dict[str, float | None], threshold: float = 0.5) -> str:
    """The standard one-line-per-column PCKh table as text."""
    names = list(table)
    head = " | ".join(f"{n:>8}" for n in names)
    row = " | ".join(f"{table[n]:8.2f}" if table[n] is not None else f"{'-':>8}" for n in names)
    return f"PCKh@{threshold:g}\n{head}\n{row}"
