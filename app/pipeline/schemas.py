"""Response shapes, documented in OpenAPI; `app.pipeline.results.PoseResult` renders them."""

from __future__ import annotations

from pydantic import BaseModel


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
