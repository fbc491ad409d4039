"""The one crop/affine of the project (training, evaluation and serving), in the unbiased (UDP) convention.

A person box becomes a (center, size) with the network's aspect ratio and 1.25 padding. The affine
maps the box edges onto pixel centres 0 and W-1 of the output (UDP), so the same matrix formula
serves the input crop (W=192) and the heatmap (W=48) and flips are exact.
"""

from __future__ import annotations

import cv2
import numpy as np

PADDING = 1.25


def box_to_center_size(box_xywh: np.ndarray | list[float], aspect_wh: float,
                        padding: float = PADDING) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, w, h) box -> center (2,) and size (w, h) in pixels, widened to `aspect_wh` and padded."""
    x, y, w, h = (float(v) for v in box_xywh)
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float64)
    if w > aspect_wh * h:
        h = w / aspect_wh
    else:
        w = h * aspect_wh
    return center, np.array([w, h], dtype=np.float64) * padding


def warp_matrix(center: np.ndarray, size: np.ndarray, out_wh: tuple[int, int], rot_deg: float = 0.0) -> np.ndarray:
    """2x3 matrix taking image pixels to output pixels: box (center, size) onto [0, W-1] x [0, H-1]."""
    out_w, out_h = out_wh
    sx, sy = (out_w - 1.0) / size[0], (out_h - 1.0) / size[1]
    theta = np.deg2rad(rot_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.array([[cos, sin], [-sin, cos]])  # counter-clockwise rotation of the content by rot_deg
    lin = np.diag([sx, sy]) @ rot
    shift = np.array([(out_w - 1.0) * 0.5, (out_h - 1.0) * 0.5]) - lin @ center
    return np.hstack([lin, shift[:, None]]).astype(np.float64)


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to (..., 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def crop(image: np.ndarray, matrix: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """Warp `image` with `matrix` into an out_wh crop (bilinear, black border)."""
    return cv2.warpAffine(image, matrix, out_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def heatmap_to_image_matrix(center: np.ndarray, size: np.ndarray, heatmap_wh: tuple[int, int]) -> np.ndarray:
    """2x3 matrix taking heatmap pixels back to image pixels (no rotation at test time)."""
    return invert(warp_matrix(center, size, heatmap_wh))


MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def to_input(crop_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 crop (H, W, 3) -> normalised float32 CHW RGB, ImageNet statistics."""
    rgb = crop_bgr[..., ::-1].astype(np.float32) / 255.0
    return ((rgb - MEAN) / STD).transpose(2, 0, 1).copy()


def crop_input(image: np.ndarray, center: np.ndarray, size: np.ndarray, input_wh: tuple[int, int]) -> np.ndarray:
    """A person's network input (CHW float32, normalised) at test time: no rotation, no flip."""
    return to_input(crop(image, warp_matrix(center, size, input_wh), input_wh))


def heatmap_points_to_image(coords: np.ndarray, centers: np.ndarray, sizes: np.ndarray,
                            heatmap_wh: tuple[int, int]) -> np.ndarray:
    """(N, K, 2) heatmap-pixel coordinates of N persons -> image pixels, each through its own box."""
    out = np.empty(np.shape(coords), dtype=np.float64)
    for i in range(len(out)):
        out[i] = apply(heatmap_to_image_matrix(centers[i], sizes[i], heatmap_wh), coords[i])
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x1y1x2y2 boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
