"""Person boxes <-> network crops and heatmaps <-> image keypoints, through the one geometry of model/geometry."""

from __future__ import annotations

import numpy as np

from model import geometry
from model.codec import decode
from model.network import NetConfig


def prepare_crops(image: np.ndarray, boxes_xyxy: np.ndarray, cfg: NetConfig) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """(N, 4) x1y1x2y2 boxes -> network inputs (N, 3, H, W) float32, centers (N, 2) and sizes (N, 2)."""
    in_h, in_w = cfg.input_hw
    n = len(boxes_xyxy)
    crops = np.zeros((n, 3, in_h, in_w), dtype=np.float32)
    centers = np.zeros((n, 2), dtype=np.float64)
    sizes = np.zeros((n, 2), dtype=np.float64)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes_xyxy, dtype=np.float64)):
        centers[i], sizes[i] = geometry.box_to_center_size((x1, y1, x2 - x1, y2 - y1), in_w / in_h)
        crops[i] = geometry.crop_input(image, centers[i], sizes[i], (in_w, in_h))
    return crops, centers, sizes


def heatmaps_to_keypoints(heatmaps: np.ndarray, centers: np.ndarray, sizes: np.ndarray, cfg: NetConfig,
                          image_wh: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, h, w) heatmaps -> keypoints (N, K, 2) in image pixels and scores (N, K).

    With `image_wh` the keypoints are clipped into the image (the padded crop may reach past its border).
    """
    n, k = heatmaps.shape[:2]
    if n == 0:
        return np.zeros((0, k, 2)), np.zeros((0, k))
    coords, scores = decode(heatmaps)
    hm_h, hm_w = cfg.heatmap_hw
    points = geometry.heatmap_points_to_image(coords, centers, sizes, (hm_w, hm_h))
    if image_wh is not None:
        points[..., 0] = points[..., 0].clip(0, image_wh[0] - 1)
        points[..., 1] = points[..., 1].clip(0, image_wh[1] - 1)
    return points, scores.astype(np.float64)


def pose_score(scores: np.ndarray, threshold: float) -> float:
    """Instance score: mean score of the keypoints at or above the threshold (0 when none is)."""
    kept = scores[scores >= threshold]
    return float(kept.mean()) if len(kept) else 0.0
