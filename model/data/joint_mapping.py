"""COCO-17 -> MPII-16 joints: one mapping for converting COCO-format labels and for scoring COCO models on MPII.

The 12 limb joints (shoulders, elbows, wrists, hips, knees, ankles) are the same points in both sets.
MPII's other four:
- pelvis = midpoint of the two hips, thorax = midpoint of the two shoulders (labelled when both are);
- upper_neck and head_top have no COCO counterpart. LSP labels them (`lsp_neck`, `lsp_head_top` in the
  shared LSPET annotations): the converter takes them from there; a COCO model cannot predict them, so
  PCKh of a COCO model leaves them (and the Head column) unscored.
"""

from __future__ import annotations

import numpy as np

from model.data.datasets import COCO, MPII

# MPII joint name -> the COCO joint it is
LIMB_JOINTS: dict[str, str] = {name: name for name in MPII.joint_names if name in COCO.joint_names}
MIDPOINTS: dict[str, tuple[str, str]] = {"pelvis": ("left_hip", "right_hip"),
                                         "thorax": ("left_shoulder", "right_shoulder")}
UNMAPPED: tuple[str, ...] = ("upper_neck", "head_top")  # no COCO counterpart


def coco_to_mpii(points: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO joints (..., 17, 2) and labels/visibility (..., 17) -> MPII joints (..., 16, 2) and (..., 16).

    Unmapped joints (upper_neck, head_top) come out unlabelled (0) at (0, 0); a midpoint is labelled only
    when both of its joints are.
    """
    points, visible = np.asarray(points, dtype=np.float64), np.asarray(visible, dtype=np.float64)
    out = np.zeros(points.shape[:-2] + (MPII.num_joints, 2))
    vis = np.zeros(visible.shape[:-1] + (MPII.num_joints,))
    for name, coco_name in LIMB_JOINTS.items():
        i, j = MPII.index(name), COCO.index(coco_name)
        out[..., i, :], vis[..., i] = points[..., j, :], visible[..., j]
    for name, (a, b) in MIDPOINTS.items():
        i, ja, jb = MPII.index(name), COCO.index(a), COCO.index(b)
        both = np.minimum(visible[..., ja], visible[..., jb])
        out[..., i, :] = np.where(both[..., None] > 0, (points[..., ja, :] + points[..., jb, :]) / 2, 0.0)
        vis[..., i] = both
    return out, vis


def scored_joints(dataset_name: str) -> tuple[str, ...]:
    """The MPII joints a model of `dataset_name` can be scored on."""
    if dataset_name == MPII.name:
        return MPII.joint_names
    if dataset_name == COCO.name:
        return tuple(n for n in MPII.joint_names if n not in UNMAPPED)
    raise ValueError(f"no mapping from {dataset_name} joints to MPII")
