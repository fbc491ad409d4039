"""MPII json (HRNet/MMPose) entries -> crops and 0-based joints: one convention for training and evaluation.

Entries: {image, center, scale, joints (16x2), joints_vis (16)}, coordinates 1-based (Matlab), box side =
scale x `box_unit` px, crop centre moved down by `center_shift` x scale px (the dataset info's conventions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.data import geometry
from model.data.datasets import MPII, DatasetInfo


@dataclass
class MpiiPerson:
    """One entry: crop center and padded size, joints (16, 2) 0-based, visibility (16,)."""

    center: np.ndarray
    size: np.ndarray
    joints: np.ndarray
    visible: np.ndarray


def load_mpii(ann_file: str | Path) -> list[dict[str, Any]]:
    """Entries of an HRNet/MMPose MPII json (a list of persons)."""
    entries = json.loads(Path(ann_file).read_text())
    if not isinstance(entries, list) or (entries and "joints" not in entries[0]):
        raise ValueError(f"{ann_file} is not an MPII json (list of {{image, center, scale, joints, joints_vis}})")
    return entries


def mpii_person(entry: dict[str, Any], aspect_wh: float, info: DatasetInfo = MPII) -> MpiiPerson:
    """The crop and 0-based joints of one entry, by the dataset's conventions (used by training and eval)."""
    scale = float(entry["scale"])
    origin = info.coordinate_origin
    cx = float(entry["center"][0]) - origin
    cy = float(entry["center"][1]) + info.center_shift * scale - origin
    side = scale * info.box_unit
    center, size = geometry.box_to_center_size([cx - side / 2, cy - side / 2, side, side], aspect_wh)
    joints = np.asarray(entry["joints"], dtype=np.float64).reshape(-1, 2) - origin
    visible = np.asarray(entry["joints_vis"], dtype=np.float64).reshape(-1)
    return MpiiPerson(center, size, joints, visible)
