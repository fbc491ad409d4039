"""Keypoint definitions: COCO-17 and MPII-16 names, flip pairs, skeletons, OKS sigmas."""

from __future__ import annotations

import numpy as np

COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
# 0-based edges of the COCO person skeleton.
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0
COCO_UPPER_BODY = tuple(range(11))

MPII_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
    "left_elbow", "left_wrist",
)
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
MPII_SKELETON = ((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (7, 12), (12, 11),
                 (11, 10), (7, 13), (13, 14), (14, 15))
MPII_UPPER_BODY = (6, 7, 8, 9, 10, 11, 12, 13, 14, 15)


def flip_pairs(num_joints: int) -> tuple[tuple[int, int], ...]:
    """Left/right pairs for a joint set, chosen by its size (17 COCO, 16 MPII)."""
    return {17: COCO_FLIP_PAIRS, 16: MPII_FLIP_PAIRS}[num_joints]


def upper_body(num_joints: int) -> tuple[int, ...]:
    return {17: COCO_UPPER_BODY, 16: MPII_UPPER_BODY}[num_joints]


def flip_permutation(num_joints: int) -> np.ndarray:
    """Index array that swaps left and right joints."""
    perm = np.arange(num_joints)
    for a, b in flip_pairs(num_joints):
        perm[a], perm[b] = b, a
    return perm
