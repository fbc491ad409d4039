"""Label conventions measured against the teacher, and corrected: joint offsets, left/right swaps, contradictions.

Offsets are measured in each person's own frame, in torso lengths: `up` runs from the hips' midpoint to the
shoulders' (positive: the label sits higher on the body than the teacher's joint), `out` runs away from the body's
midline on the joint's own side (positive: wider). The frame comes from the person's labels (both shoulders and
hips labelled), so a correction fitted on a training set applies to a set without a teacher (a validation split).
All functions take (17, 3) arrays: x, y and a weight (labels: > 0 labelled; teacher: confidence).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from model.data.datasets import COCO

SHOULDERS, HIPS = (5, 6), (11, 12)
CONFIDENT = 0.5  # teacher joints at or above this confidence are trusted for comparisons
MIN_PERSONS = 30  # least persons with a joint measured before its offset is corrected


@dataclass(frozen=True)
class Frame:
    origin: np.ndarray  # hips' midpoint
    up: np.ndarray  # unit vector, hips -> shoulders
    left: np.ndarray  # unit vector perpendicular to `up`, towards the person's left side
    torso: float  # shoulders' midpoint to hips' midpoint, pixels

    def outward(self) -> np.ndarray:
        """(17, 2) unit vectors away from the midline on each joint's side (the nose: `left`)."""
        sign = np.array([1.0] + [1.0 if i % 2 else -1.0 for i in range(1, COCO.num_joints)])
        return sign[:, None] * self.left[None, :]


def body_frame(kpts: np.ndarray) -> Frame | None:
    """The person's frame from labelled shoulders and hips; None when one is missing or the torso is degenerate."""
    if not all(kpts[j, 2] > 0 for j in (*SHOULDERS, *HIPS)):
        return None
    shoulders, hips = kpts[list(SHOULDERS), :2].mean(0), kpts[list(HIPS), :2].mean(0)
    torso = float(np.linalg.norm(shoulders - hips))
    if torso < 1.0:
        return None
    up = (shoulders - hips) / torso
    perp = np.array([-up[1], up[0]])
    left_vec = (kpts[5, :2] - kpts[6, :2]) + (kpts[11, :2] - kpts[12, :2])
    left = perp if perp @ left_vec >= 0 else -perp
    return Frame(hips, up, left, torso)


def offsets(labels: np.ndarray, teacher: np.ndarray, frame: Frame) -> np.ndarray:
    """(17, 2) label-minus-teacher offsets (up, out) in torso lengths; NaN where either is not trusted."""
    d = labels[:, :2] - teacher[:, :2]
    out = np.stack([d @ frame.up, (d * frame.outward()).sum(1)], 1) / frame.torso
    trusted = (labels[:, 2] > 0) & (teacher[:, 2] >= CONFIDENT)
    out[~trusted] = np.nan
    return out


def apply_offsets(labels: np.ndarray, correction: np.ndarray, frame: Frame) -> np.ndarray:
    """Labels moved by minus `correction` (17, 2: up, out in torso lengths; NaN = none) in the person's frame."""
    corr = np.nan_to_num(correction)
    moved = labels.copy()
    shift = (corr[:, :1] * frame.up[None, :] + corr[:, 1:] * frame.outward()) * frame.torso
    labelled = labels[:, 2] > 0
    moved[labelled, :2] -= shift[labelled]
    return moved


def fit_offsets(per_person: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Median offset per joint over persons (17, 2) and the persons measured per joint; NaN below MIN_PERSONS."""
    stack = np.stack(per_person) if per_person else np.full((0, COCO.num_joints, 2), np.nan)
    counts = np.isfinite(stack[..., 0]).sum(0)
    with warnings.catch_warnings():  # joints nobody measured: NaN, said by `counts`
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(stack, 0) if len(stack) else np.full((COCO.num_joints, 2), np.nan)
    median[counts < MIN_PERSONS] = np.nan
    return median, counts


def swap_costs(labels: np.ndarray, teacher: np.ndarray) -> dict[tuple[int, int], tuple[float, float]]:
    """Per left/right pair with both joints labelled and trusted: (distance as labelled, distance swapped)."""
    out = {}
    for a, b in COCO.flip_pairs:
        if labels[a, 2] > 0 and labels[b, 2] > 0 and teacher[a, 2] >= CONFIDENT and teacher[b, 2] >= CONFIDENT:
            la, lb, ta, tb = labels[a, :2], labels[b, :2], teacher[a, :2], teacher[b, :2]
            out[(a, b)] = (float(np.linalg.norm(la - ta) + np.linalg.norm(lb - tb)),
                           float(np.linalg.norm(la - tb) + np.linalg.norm(lb - ta)))
    return out


def swapped_pairs(labels: np.ndarray, teacher: np.ndarray, scale: float, ratio: float = 0.5,
                  min_error: float = 0.2) -> tuple[bool, list[tuple[int, int]]]:
    """Whether the teacher confidently says the whole body is mirrored, and which pairs (after that) are swapped.

    A swap is confident when swapping at least halves the distance (`ratio`) and the labels as they are miss by
    more than `min_error` x `scale` (the torso length) over the pair. The whole body needs 3 measurable pairs.
    """
    costs = swap_costs(labels, teacher)
    straight = sum(c[0] for c in costs.values())
    mirrored = sum(c[1] for c in costs.values())
    whole = len(costs) >= 3 and mirrored < ratio * straight and straight > min_error * scale * len(costs)
    if whole:
        labels = mirror(labels)
        costs = swap_costs(labels, teacher)
    pairs = [p for p, (s, w) in costs.items() if w < ratio * s and s > min_error * scale]
    return whole, pairs


def mirror(kpts: np.ndarray, pairs: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Left and right exchanged (all pairs, or the given ones), weights included."""
    out = kpts.copy()
    for a, b in pairs if pairs is not None else COCO.flip_pairs:
        out[[a, b]] = out[[b, a]]
    return out


def contradicted(labels: np.ndarray, teacher: np.ndarray, area: float, max_similarity: float = 0.1) -> np.ndarray:
    """(17,) labelled joints the teacher confidently places elsewhere: COCO keypoint similarity below the bound."""
    d2 = ((labels[:, :2] - teacher[:, :2]) ** 2).sum(1)
    similarity = np.exp(-d2 / (2 * max(area, 1.0) * (2 * COCO.sigma_array()) ** 2))
    return (labels[:, 2] > 0) & (teacher[:, 2] >= CONFIDENT) & (similarity < max_similarity)
