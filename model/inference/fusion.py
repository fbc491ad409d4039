"""The `fused` pose source: LGM-Pose's and the detector's keypoints combined per joint by a fitted rule.

For joint j of a person seen by both (LGM-Pose runs top-down on the detector's own box), LGM-Pose's estimate gets
the weight

    w_j = sigmoid(bias_j + gain_j x (s_lgm - s_det))

and the detector's 1 - w_j, where s are the two joint scores (both in [0, 1]). The fused point and score are the
w-weighted means. `bias_j` says how much LGM-Pose is trusted for that joint when both are equally sure, `gain_j` how
strongly the more confident estimate takes over (a large gain is a hard choice). `lgm-pose fit-fusion` fits both
per joint on validation persons (`model.eval.fusion_fit`); the parameters travel with the pose model, with the hash
of the detector weights they were fitted against. Numpy only: the torch-free runtime fuses too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Fusion:
    bias: tuple[float, ...]  # per joint: LGM-Pose's log-odds at equal scores
    gain: tuple[float, ...]  # per joint: how fast the weight follows the score difference
    detector_sha256: str = ""  # the detector weights the rule was fitted against
    fitted_on: str = ""  # which data, and how (for the model card)
    out_of_fold: dict[str, Any] = field(default_factory=dict)  # cross-fitted figures of the fit

    def lgm_weight(self, lgm_scores: np.ndarray, det_scores: np.ndarray) -> np.ndarray:
        """(..., K) weight of LGM-Pose's estimate per joint."""
        z = np.asarray(self.bias) + np.asarray(self.gain) * (clip_scores(lgm_scores) - clip_scores(det_scores))
        return 1.0 / (1.0 + np.exp(-z))

    def fuse(self, lgm_xy: np.ndarray, lgm_scores: np.ndarray, det_xy: np.ndarray,
             det_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fused keypoints (..., K, 2) and joint scores (..., K) of persons seen by both."""
        w = self.lgm_weight(lgm_scores, det_scores)
        xy = w[..., None] * np.asarray(lgm_xy) + (1 - w[..., None]) * np.asarray(det_xy)
        return xy, w * clip_scores(lgm_scores) + (1 - w) * clip_scores(det_scores)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fusion:
        return cls(tuple(float(v) for v in data["bias"]), tuple(float(v) for v in data["gain"]),
                   data.get("detector_sha256", ""), data.get("fitted_on", ""), dict(data.get("out_of_fold", {})))


def clip_scores(scores: np.ndarray) -> np.ndarray:
    """Joint scores a client can read: in [0, 1] (a heatmap peak can pass 1 a little)."""
    return np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)


def clip_points(xy: np.ndarray, image_wh: tuple[int, int]) -> np.ndarray:
    """Keypoints (..., 2) clipped into the image's pixel centres [0, w-1] x [0, h-1]: every source's."""
    out = np.array(xy, dtype=np.float64)
    out[..., 0] = out[..., 0].clip(0, image_wh[0] - 1)
    out[..., 1] = out[..., 1].clip(0, image_wh[1] - 1)
    return out


def detector_estimate(det_keypoints: np.ndarray, image_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The detector's keypoints (..., K, 3) as served and fitted: clipped into the image, scores in [0, 1]."""
    kpts = np.asarray(det_keypoints, dtype=np.float64)
    return clip_points(kpts[..., :2], image_wh), clip_scores(kpts[..., 2])
