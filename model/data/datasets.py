"""Dataset metadata that travels with a model: joint names, flip pairs, skeleton, OKS sigmas, crop conventions.

One `DatasetInfo` per keypoint dataset (COCO-17, MPII-16). Checkpoints and ONNX exports carry it
(`to_dict`/`from_dict`), so every consumer (training, evaluation, the service, a torch-free runtime) reads the
joints of the model it runs; nothing picks metadata by the number of joints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DatasetInfo:
    """Everything about a keypoint set that is not a network weight.

    `coordinate_origin`: 0 for 0-based pixel coordinates (COCO), 1 for Matlab's 1-based ones (MPII json).
    `center_shift` and `box_unit`: MPII's box convention (HRNet/MMPose): the crop centre is moved down by
    `center_shift` x scale pixels and the box side is `box_unit` x scale; unused for COCO-style boxes.
    """

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    upper_body: tuple[int, ...]
    coordinate_origin: int = 0
    center_shift: float = 0.0
    box_unit: float = 200.0

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def flip_permutation(self) -> np.ndarray:
        """Index array that swaps left and right joints."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def sigma_array(self) -> np.ndarray:
        return np.asarray(self.sigmas, dtype=np.float64)

    def index(self, name: str) -> int:
        return self.joint_names.index(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetInfo:
        def freeze(v: Any) -> Any:
            return tuple(freeze(x) for x in v) if isinstance(v, list | tuple) else v
        return cls(**{k: freeze(v) for k, v in data.items()})


COCO = DatasetInfo(
    name="coco",
    joint_names=("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                 "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                 "left_knee", "right_knee", "left_ankle", "right_ankle"),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
              (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
    sigmas=(.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089),
    upper_body=tuple(range(11)),
)

# MPII has no official OKS sigmas; each joint takes its nearest COCO joint's (pelvis, thorax, neck and head top
# the hip's, shoulder's, shoulder's and ear's). They only serve OKS-NMS of MPII models.
MPII = DatasetInfo(
    name="mpii",
    joint_names=("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis",
                 "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder",
                 "left_shoulder", "left_elbow", "left_wrist"),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (7, 12), (12, 11),
              (11, 10), (7, 13), (13, 14), (14, 15)),
    sigmas=(.089, .087, .107, .107, .087, .089, .107, .079, .079, .035, .062, .072, .079, .079, .072, .062),
    upper_body=(6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    coordinate_origin=1,
    center_shift=15.0,
)

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (COCO, MPII)}


def get_dataset(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    return DATASETS[name]
