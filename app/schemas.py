"""Response shapes (documented in OpenAPI) and their construction from a PoseResult."""

from __future__ import annotations

from pydantic import BaseModel

from app.pipeline import PoseResult
from model.keypoints import COCO_NAMES, COCO_SKELETON, MPII_NAMES, MPII_SKELETON


class ImageSize(BaseModel):
    width: int
    height: int


class Keypoint(BaseModel):
    name: str
    x: float
    y: float
    score: float


class PersonOut(BaseModel):
    box: list[float]  # x1, y1, x2, y2
    box_score: float
    pose_score: float
    keypoints: list[Keypoint]


class PoseResponse(BaseModel):
    image: ImageSize
    persons: list[PersonOut]
    skeleton: list[tuple[int, int]]
    timing_ms: dict[str, float]
    batch_sizes: list[int]


class CocoRecord(BaseModel):
    image_id: int
    category_id: int = 1
    bbox: list[float]  # x, y, w, h
    keypoints: list[float]  # x, y, score per joint
    score: float


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def joint_names(num_joints: int) -> tuple[str, ...]:
    return COCO_NAMES if num_joints == 17 else MPII_NAMES


def skeleton(num_joints: int) -> tuple[tuple[int, int], ...]:
    return COCO_SKELETON if num_joints == 17 else MPII_SKELETON


def to_response(result: PoseResult) -> PoseResponse:
    persons = []
    for p in result.persons:
        names = joint_names(len(p.scores))
        kps = [Keypoint(name=names[j], x=float(p.keypoints[j, 0]), y=float(p.keypoints[j, 1]),
                        score=float(p.scores[j])) for j in range(len(p.scores))]
        persons.append(PersonOut(box=[float(v) for v in p.box], box_score=p.box_score, pose_score=p.pose_score,
                                 keypoints=kps))
    k = len(result.persons[0].scores) if result.persons else 17
    return PoseResponse(image=ImageSize(width=result.width, height=result.height), persons=persons,
                        skeleton=list(skeleton(k)), timing_ms=result.timing_ms, batch_sizes=result.batch_sizes)


def to_coco(result: PoseResult, image_id: int) -> list[CocoRecord]:
    """COCO keypoint result records; score = box score x pose score (the usual top-down rescoring)."""
    records = []
    for p in result.persons:
        x1, y1, x2, y2 = (float(v) for v in p.box)
        flat = [float(v) for j in range(len(p.scores)) for v in (p.keypoints[j, 0], p.keypoints[j, 1], p.scores[j])]
        records.append(CocoRecord(image_id=image_id, bbox=[x1, y1, x2 - x1, y2 - y1], keypoints=flat,
                                  score=p.box_score * p.pose_score))
    return records
