"""Pose sources: which estimate of the keypoints a request gets, and the one scoring rule over each.

- `lgm`: LGM-Pose top-down on the person boxes (the shared batcher), as `TopDown.decode`.
- `detector`: YOLO11n-pose's own keypoints and scores of the same detections; LGM-Pose does not run.
- `fused`: both on the detector's boxes, combined per joint by the rule fitted with the pose weights
  (`model.inference.fusion.Fusion`, read from the checkpoint or the ONNX metadata).

Every source ends in `TopDown.score`: keypoints clipped into the image, joint scores in [0, 1], pose score = mean
of the joint scores above 0.2, instance score = box score x pose score, OKS-NMS at the crop scale. Client boxes
(and a stream's boxes followed from the last frame) have no detector keypoints: `detector` is refused there and
`fused` answers with `lgm`, saying so.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from app.core.errors import BadParameter
from model.inference.fusion import Fusion, clip_scores, detector_estimate
from model.inference.topdown import Poses, TopDown

PoseSource = Literal["lgm", "detector", "fused"]
SOURCES: tuple[str, ...] = get_args(PoseSource)
NO_DETECTOR_KEYPOINTS = "the boxes came from the client (or the last frame), not the detector: no detector keypoints"


def parse_source(value: object) -> str:
    """A pose source from a query/form string or a JSON value; BadParameter (422) otherwise."""
    if not isinstance(value, str) or value not in SOURCES:
        raise BadParameter(f"pose_source must be one of {', '.join(repr(s) for s in SOURCES)}")
    return value


def resolve(requested: str, has_boxes: bool, explicit: bool = True) -> tuple[str, str | None]:
    """The source that answers and why it differs from the requested one (None when it does not).

    Without the detector's keypoints (`has_boxes`): `fused`, and a `detector` that was only the default, answer with
    `lgm`; a `detector` the client asked for is refused (422).
    """
    if not has_boxes or requested == "lgm":
        return requested, None
    if requested == "detector" and explicit:
        raise BadParameter(f"pose_source 'detector' needs the detector's keypoints, and {NO_DETECTOR_KEYPOINTS}: "
                           "leave out boxes, or ask for pose_source 'lgm'")
    return "lgm", f"{requested} asked, lgm answered: {NO_DETECTOR_KEYPOINTS}"


def require_fusion(source: str, fusion: Fusion | None) -> None:
    """422 when `fused` is asked of a pose model without a fitted rule."""
    if source == "fused" and fusion is None:
        raise BadParameter("pose_source 'fused' is not available: the served pose weights carry no fitted fusion "
                           "rule (run `lgm-pose fit-fusion`); ask for 'lgm' or 'detector'")


def detector_poses(topdown: TopDown, boxes: np.ndarray, box_scores: np.ndarray, det_keypoints: np.ndarray,
                   image_wh: tuple[int, int]) -> Poses:
    """Source `detector`: YOLO's keypoints (N, K, 3) under the scoring rule (OKS scale: LGM-Pose's crop size)."""
    xy, scores = detector_estimate(det_keypoints, image_wh)
    return topdown.score(xy, scores, boxes, box_scores, topdown.centers_sizes(boxes)[1])


def fused_poses(topdown: TopDown, fusion: Fusion, lgm: tuple[np.ndarray, np.ndarray], det_keypoints: np.ndarray,
                boxes: np.ndarray, box_scores: np.ndarray, sizes: np.ndarray, image_wh: tuple[int, int]) -> Poses:
    """Source `fused`: LGM-Pose's (xy, scores) and the detector's keypoints of the same boxes, fused per joint."""
    det_xy, det_scores = detector_estimate(det_keypoints, image_wh)
    xy, scores = fusion.fuse(lgm[0], clip_scores(lgm[1]), det_xy, det_scores)
    return topdown.score(xy, clip_scores(scores), boxes, box_scores, sizes)
