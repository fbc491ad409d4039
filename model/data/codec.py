"""The one heatmap codec: it owns input size, heatmap size, sigma and DARK decoding; flip test is here too.

Coordinates are in heatmap pixels (UDP: pixel centres, no half-pixel shift); `model.data.geometry` maps
them to and from image pixels. A `HeatmapCodec` is stored with the model (checkpoint and ONNX metadata).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

STRIDE = 4  # LGM-Pose's heatmaps are at 1/4 of the input resolution


@dataclass(frozen=True)
class HeatmapCodec:
    """Gaussian targets with target weights, DARK sub-pixel decoding and flip averaging for one input size."""

    input_hw: tuple[int, int]
    heatmap_hw: tuple[int, int]
    sigma: float = 2.0
    blur_kernel: int = 11

    @classmethod
    def for_input(cls, input_hw: tuple[int, int] | list[int], sigma: float = 2.0, blur_kernel: int = 11,
                  stride: int = STRIDE) -> HeatmapCodec:
        h, w = int(input_hw[0]), int(input_hw[1])
        return cls((h, w), (h // stride, w // stride), sigma, blur_kernel)

    @property
    def input_wh(self) -> tuple[int, int]:
        return self.input_hw[1], self.input_hw[0]

    @property
    def heatmap_wh(self) -> tuple[int, int]:
        return self.heatmap_hw[1], self.heatmap_hw[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeatmapCodec:
        return cls(tuple(data["input_hw"]), tuple(data["heatmap_hw"]), float(data["sigma"]), int(data["blur_kernel"]))

    def encode(self, keypoints: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian heatmaps (K, H, W) centred on sub-pixel keypoints (K, 2) in heatmap pixels, and target weights.

        `weights` (K,) are the joint weights before checks (0 for unlabelled); a joint whose Gaussian
        falls entirely outside the heatmap gets weight 0.
        """
        return _encode(keypoints, weights, self.heatmap_wh, self.sigma)

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, H, W) heatmaps -> coords (N, K, 2) in heatmap pixels and scores (N, K) (the peak value)."""
        return _decode(heatmaps, self.blur_kernel)

    @staticmethod
    def flip_back(heatmaps: np.ndarray, flip_permutation: np.ndarray) -> np.ndarray:
        """Heatmaps predicted on a horizontally flipped input -> the unflipped frame (mirror + swap L/R)."""
        return heatmaps[:, flip_permutation, :, ::-1]

    def average_flip(self, heatmaps: np.ndarray, flipped_heatmaps: np.ndarray,
                     flip_permutation: np.ndarray) -> np.ndarray:
        """Flip test: mean of the plain and the flipped-back predictions."""
        return 0.5 * (heatmaps + self.flip_back(flipped_heatmaps, flip_permutation))


def _encode(keypoints: np.ndarray, weights: np.ndarray, heatmap_wh: tuple[int, int],
            sigma: float) -> tuple[np.ndarray, np.ndarray]:
    w, h = heatmap_wh
    k = len(keypoints)
    heatmaps = np.zeros((k, h, w), dtype=np.float32)
    target_weights = np.asarray(weights, dtype=np.float32).copy()
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    radius = 3 * sigma
    for j, (x, y) in enumerate(keypoints):
        if target_weights[j] <= 0 or not (-radius <= x <= w - 1 + radius and -radius <= y <= h - 1 + radius):
            target_weights[j] = 0.0
            continue
        heatmaps[j] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return heatmaps, target_weights


def _argmax(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = flat.argmax(-1)
    scores = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    coords = np.stack([idx % w, idx // w], -1).astype(np.float64)
    return coords, scores


def _blur(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """DARK's distribution modulation: Gaussian blur that keeps each map's maximum."""
    out = np.empty_like(heatmaps)
    for i in np.ndindex(heatmaps.shape[:2]):
        hm = heatmaps[i]
        peak = hm.max()
        blurred = cv2.GaussianBlur(hm, (kernel, kernel), 0)
        out[i] = blurred * (peak / max(blurred.max(), 1e-12))
    return out


def _decode(heatmaps: np.ndarray, blur_kernel: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, H, W) heatmaps -> coords (N, K, 2) in heatmap pixels and scores (N, K) (the peak value).

    Sub-pixel refinement by DARK: a second-order Taylor expansion of the log heatmap at the argmax.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    coords, scores = _argmax(heatmaps)
    n, k, h, w = heatmaps.shape
    logs = np.log(np.maximum(_blur(heatmaps, blur_kernel) if blur_kernel else heatmaps, 1e-10))
    for i, j in np.ndindex(n, k):
        x, y = int(coords[i, j, 0]), int(coords[i, j, 1])
        if not (1 <= x < w - 1 and 1 <= y < h - 1):
            continue
        lg = logs[i, j]
        dx = 0.5 * (lg[y, x + 1] - lg[y, x - 1])
        dy = 0.5 * (lg[y + 1, x] - lg[y - 1, x])
        dxx = lg[y, x + 1] - 2 * lg[y, x] + lg[y, x - 1]
        dyy = lg[y + 1, x] - 2 * lg[y, x] + lg[y - 1, x]
        dxy = 0.25 * (lg[y + 1, x + 1] - lg[y + 1, x - 1] - lg[y - 1, x + 1] + lg[y - 1, x - 1])
        det = dxx * dyy - dxy * dxy
        if abs(det) < 1e-12 or dxx >= 0 or dyy >= 0:
            continue
        ox = -(dyy * dx - dxy * dy) / det
        oy = -(dxx * dy - dxy * dx) / det
        if abs(ox) < 1.5 and abs(oy) < 1.5:
            coords[i, j] += (ox, oy)
    return coords, scores
