"""The one top-down inference path: boxes -> crops -> runner -> flip -> decode -> keypoints -> scoring/OKS-NMS.

Every consumer goes through `TopDown`: the service (`POST /pose`, `WS /ws/pose`, whose forward pass is the
shared batcher), evaluation (`lgm-pose eval`, `/eval` jobs, `lgm-pose compare`) and training validation.
The steps are split so the service can run the forward pass elsewhere:

    prepared = topdown.prepare(image, boxes)            # crops (+ mirrored crops for flip test)
    heatmaps = runner(prepared.inputs)                  # any Runner, or the service's batcher
    poses = topdown.decode(prepared, heatmaps, boxes, box_scores, image_wh)   # flip-average, decode, score

`ScoringRule` is the one rule for every output (JSON, COCO records, streams, evaluation): keypoints clipped
into the image, joint scores into [0, 1] (a heatmap peak can pass 1 a little); pose score = mean of the joint
scores above `joint_threshold` (0 when none is); instance score = box score x pose score; greedy OKS-NMS per
image at `oks_nms_threshold` (poses kept in input order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from model.data import geometry
from model.data.datasets import COCO
from model.data.meta import PoseMeta
from model.inference.fusion import clip_points, clip_scores

Runner = Callable[[np.ndarray], np.ndarray]
RESCORE_THRESHOLD = 0.2
OKS_NMS_THRESHOLD = 0.9


@dataclass(frozen=True)
class ScoringRule:
    """Instance scoring, OKS-NMS and clipping, the same for every output."""

    joint_threshold: float = RESCORE_THRESHOLD
    oks_nms_threshold: float | None = OKS_NMS_THRESHOLD  # None: no NMS
    clip_to_image: bool = True


@dataclass
class PreparedCrops:
    """Network inputs of the persons of one image; with flip test the mirrored crops follow the plain ones."""

    inputs: np.ndarray  # (n or 2n, 3, H, W) float32
    centers: np.ndarray  # (n, 2) image pixels
    sizes: np.ndarray  # (n, 2) padded crop size in image pixels
    flip: bool

    def __len__(self) -> int:
        return len(self.centers)


@dataclass
class Poses:
    """Poses of one image, in image pixels, after scoring and OKS-NMS (`boxes` x1y1x2y2)."""

    boxes: np.ndarray  # (n, 4)
    box_scores: np.ndarray  # (n,)
    keypoints: np.ndarray  # (n, K, 2)
    joint_scores: np.ndarray  # (n, K)
    pose_scores: np.ndarray  # (n,)
    scores: np.ndarray  # (n,) instance score = box score x pose score
    areas: np.ndarray  # (n,) padded crop area (the OKS scale of NMS)
    source_index: np.ndarray  # (n,) index of each pose's box in the input

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, idx: Sequence[int] | np.ndarray) -> Poses:
        idx = np.asarray(idx, dtype=np.int64)
        return Poses(self.boxes[idx], self.box_scores[idx], self.keypoints[idx], self.joint_scores[idx],
                     self.pose_scores[idx], self.scores[idx], self.areas[idx], self.source_index[idx])


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.c_[b[:, :2], b[:, :2] + b[:, 2:]]


def pose_scores(joint_scores: np.ndarray, threshold: float) -> np.ndarray:
    """Mean of the joint scores above `threshold` per person (0 when none is)."""
    joint_scores = np.asarray(joint_scores, dtype=np.float64)
    above = joint_scores > threshold
    count = above.sum(1)
    return np.where(count > 0, (joint_scores * above).sum(1) / np.maximum(count, 1), 0.0)


def oks_matrix(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray,
               vis_threshold: float | None = None) -> np.ndarray:
    """Pairwise OKS (N, N) of poses (N, K, 3) [x, y, score], scale = mean of the two areas (as HRNet/MMPose).

    All joints count (the standard, vis_threshold=None); with a threshold only the joints scored above it
    in both poses do (MMPose's vis_thr), and a pair without such a joint has OKS 0.
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    d2 = ((kps[:, None, :, :2] - kps[None, :, :, :2]) ** 2).sum(-1)  # (N, N, K)
    scale = (areas[:, None] + areas[None]) / 2 + np.spacing(1)
    variances = (2 * np.asarray(sigmas)) ** 2
    similarity = np.exp(-d2 / variances / scale[..., None] / 2)
    if vis_threshold is None:
        return similarity.mean(-1)
    seen = kps[..., 2] > vis_threshold
    both = seen[:, None] & seen[None]
    return (similarity * both).sum(-1) / np.maximum(both.sum(-1), 1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float = OKS_NMS_THRESHOLD,
            sigmas: np.ndarray | None = None, vis_threshold: float | None = None) -> list[int]:
    """Greedy NMS on OKS: indices kept, best score first; a pose is dropped when OKS > threshold to a kept one.

    `sigmas` default to COCO's.
    """
    if len(scores) == 0:
        return []
    sigmas = COCO.sigma_array() if sigmas is None else sigmas
    oks = oks_matrix(keypoints, np.asarray(areas, dtype=np.float64), sigmas, vis_threshold)
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        order = [i for i in order if oks[best, i] <= threshold]
    return keep


class TopDown:
    """Crop, flip, decode and score persons for one model (its `PoseMeta`: dataset metadata and codec)."""

    def __init__(self, meta: PoseMeta, flip: bool = True, rule: ScoringRule | None = None) -> None:
        self.meta, self.flip, self.rule = meta, flip, rule or ScoringRule()
        self.codec, self.dataset = meta.codec, meta.dataset
        self._flip_perm = meta.dataset.flip_permutation()

    # crops --------------------------------------------------------------------------------------------------
    def centers_sizes(self, boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) x1y1x2y2 boxes -> crop centers and padded sizes with the network's aspect ratio."""
        w, h = self.codec.input_wh
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        pairs = [geometry.box_to_center_size((x1, y1, x2 - x1, y2 - y1), w / h) for x1, y1, x2, y2 in boxes]
        return (np.array([c for c, _ in pairs]).reshape(-1, 2), np.array([s for _, s in pairs]).reshape(-1, 2))

    def prepare(self, image: np.ndarray, boxes_xyxy: np.ndarray) -> PreparedCrops:
        """Network inputs for the persons in `boxes_xyxy` (and their mirror images with flip test)."""
        return self.prepare_crops(image, *self.centers_sizes(boxes_xyxy))

    def prepare_crops(self, image: np.ndarray, centers: np.ndarray, sizes: np.ndarray) -> PreparedCrops:
        """Network inputs for crops given by centre and padded size (MPII's center/scale convention)."""
        w, h = self.codec.input_wh
        crops = np.zeros((len(centers), 3, h, w), dtype=np.float32)
        for i, (center, size) in enumerate(zip(centers, sizes, strict=True)):
            crops[i] = geometry.crop_input(image, center, size, (w, h))
        flip = self.flip and len(crops) > 0
        if flip:
            crops = np.concatenate([crops, np.ascontiguousarray(crops[..., ::-1])])
        return PreparedCrops(crops, np.asarray(centers, np.float64), np.asarray(sizes, np.float64), flip)

    # heatmaps -> keypoints ----------------------------------------------------------------------------------
    def keypoints(self, prepared: PreparedCrops, heatmaps: np.ndarray,
                  image_wh: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Flip-average, decode and map to image pixels (clipped into the image when the rule says so); joint scores
        in [0, 1]."""
        n, k = len(prepared), self.dataset.num_joints
        if n == 0:
            return np.zeros((0, k, 2)), np.zeros((0, k))
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        if prepared.flip:
            heatmaps = self.codec.average_flip(heatmaps[:n], heatmaps[n:], self._flip_perm)
        coords, scores = self.codec.decode(heatmaps)
        points = geometry.heatmap_points_to_image(coords, prepared.centers, prepared.sizes, self.codec.heatmap_wh)
        if self.rule.clip_to_image and image_wh is not None:
            points = clip_points(points, image_wh)
        return points, clip_scores(scores)  # where LGM-Pose's scores leave the model path

    def decode(self, prepared: PreparedCrops, heatmaps: np.ndarray, boxes_xyxy: np.ndarray,
               box_scores: np.ndarray, image_wh: tuple[int, int] | None) -> Poses:
        """Keypoints, the rule's scores and OKS-NMS: the poses of one image."""
        points, joint_scores = self.keypoints(prepared, heatmaps, image_wh)
        return self.score(points, joint_scores, boxes_xyxy, box_scores, prepared.sizes)

    def score(self, keypoints: np.ndarray, joint_scores: np.ndarray, boxes_xyxy: np.ndarray,
              box_scores: np.ndarray, sizes: np.ndarray) -> Poses:
        """Apply the scoring rule and OKS-NMS to the poses of one image (kept in input order)."""
        n = len(joint_scores)
        pose = pose_scores(joint_scores, self.rule.joint_threshold) if n else np.zeros(0)
        box_scores = np.asarray(box_scores, dtype=np.float64).reshape(n)
        areas = np.asarray(sizes, dtype=np.float64).reshape(n, 2).prod(1)
        poses = Poses(np.asarray(boxes_xyxy, dtype=np.float64).reshape(n, 4), box_scores, keypoints, joint_scores,
                      pose, box_scores * pose, areas, np.arange(n))
        if self.rule.oks_nms_threshold is None or n < 2:
            return poses
        keep = oks_nms(keypoints, poses.scores, areas, self.rule.oks_nms_threshold, self.dataset.sigma_array())
        return poses.take(sorted(keep))

    # synchronous convenience --------------------------------------------------------------------------------
    def estimate(self, runner: Runner, image: np.ndarray, boxes_xyxy: np.ndarray,
                 box_scores: np.ndarray | None = None) -> Poses:
        """Poses of the persons in `boxes_xyxy` with a synchronous runner."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        scores = np.ones(len(boxes)) if box_scores is None else box_scores
        prepared = self.prepare(image, boxes)
        heatmaps = run_batched(runner, [prepared.inputs])[0] if len(boxes) else None
        h, w = image.shape[:2]
        return self.decode(prepared, heatmaps, boxes, scores, (w, h))


def run_batched(runner: Runner, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """One forward pass over the inputs of several images; heatmaps split back per image."""
    sizes = [len(x) for x in inputs]
    if sum(sizes) == 0:
        return [np.zeros((0,)) for _ in inputs]
    heatmaps = np.asarray(runner(np.concatenate([x for x in inputs if len(x)])), dtype=np.float32)
    return np.split(heatmaps, np.cumsum(sizes)[:-1])
