"""Response shapes, documented in OpenAPI; `app.pipeline.results.PoseResult` renders them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.pipeline.sources import PoseSource


class ImageSize(BaseModel):
    width: int
    height: int


class Keypoint(BaseModel):
    name: str
    x: float
    y: float
    score: float = Field(ge=0.0, le=1.0)


class PersonOut(BaseModel):
    box: list[float]  # x1, y1, x2, y2
    box_score: float
    pose_score: float = Field(ge=0.0, le=1.0)  # mean of the joint scores above 0.2
    score: float  # box_score x pose_score, the instance score of COCO results
    source: PoseSource = Field(description="which estimate these keypoints are: lgm, detector or fused")
    keypoints: list[Keypoint]


class PoseResponse(BaseModel):
    image: ImageSize
    persons: list[PersonOut]
    skeleton: list[tuple[int, int]]
    timing_ms: dict[str, float]
    batch_sizes: list[int]  # LGM-Pose forward passes (none with source `detector`)
    source: PoseSource = Field(description="the pose source that answered")
    source_note: str | None = Field(None, description="why `source` is not the one asked (client boxes have no "
                                    "detector keypoints: fused falls back to lgm)")


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
