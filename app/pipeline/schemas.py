"""Response shapes (documented in OpenAPI) and their construction from a PoseResult."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from app.pipeline.pose_pipeline import PoseResult
from model.data.datasets import DatasetInfo
from model.eval.coco import to_records


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
    score: float  # box_score x pose_score, the instance score of COCO results
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


def to_response(result: PoseResult, dataset: DatasetInfo) -> PoseResponse:
    names = dataset.joint_names
    persons = []
    for p in result.persons:
        kps = [Keypoint(name=names[j], x=float(p.keypoints[j, 0]), y=float(p.keypoints[j, 1]),
                        score=float(p.scores[j])) for j in range(len(p.scores))]
        persons.append(PersonOut(box=[float(v) for v in p.box], box_score=p.box_score, pose_score=p.pose_score,
                                 score=p.score, keypoints=kps))
    return PoseResponse(image=ImageSize(width=result.width, height=result.height), persons=persons,
                        skeleton=[tuple(e) for e in dataset.skeleton], timing_ms=result.timing_ms,
                        batch_sizes=result.batch_sizes)


def to_coco(result: PoseResult, image_id: int) -> list[CocoRecord]:
    """COCO keypoint result records, as `lgm-pose eval` writes them (same scoring rule, same rounding)."""
    if not result.persons:
        return []
    records = to_records([image_id] * len(result.persons), np.array([p.keypoints for p in result.persons]),
                         np.array([p.scores for p in result.persons]), [p.score for p in result.persons])
    out = []
    for rec, p in zip(records, result.persons, strict=True):
        x1, y1, x2, y2 = (float(v) for v in p.box)
        out.append(CocoRecord(bbox=[x1, y1, x2 - x1, y2 - y1], **rec))
    return out
