"""Response shapes, documented in OpenAPI; `app.pipeline.results.PoseResult` renders them."""

from __future__ import annotations

from typing import Literal

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


class ServedModel(BaseModel):
    """The pose network served: what a client needs to read its answers (no training record, no paths)."""

    config: str = Field(description="network configuration, e.g. coco_256x192")
    dataset: str = Field(description="keypoint set: coco (17 joints) or mpii (16)")
    num_joints: int
    input_hw: tuple[int, int] = Field(description="crop size the network reads, height and width")
    heatmap_hw: tuple[int, int]
    weights: str = Field(description="weights file, relative to the repository or by name")
    weights_loaded: bool = Field(description="False: random initial weights (untrained)")
    backend: str = Field(description="torch, onnxruntime or openvino (what `auto` chose, when auto)")
    device: str
    precision: str = Field("f32", description="f32, or bf16/int8 accepted by `lgm-pose check-precision`; torch on "
                           "cuda: fp16 or f32")
    chosen_because: str | None = Field(None, description="how backend and precision were chosen: pinned, or auto's "
                                       "timed trial among the accepted candidates, with the CPU flags")


class DetectorRuntime(BaseModel):
    """The person detector's runtime and precision, and why."""

    backend: str = Field(description="torch, onnxruntime or openvino")
    precision: str
    chosen_because: str | None = None


class ReadyResponse(BaseModel):
    """/readyz: readiness and what is served. The one documented field list (README: Endpoints)."""

    ready: bool
    status: Literal["ready", "loading", "failed"]
    error: str | None = Field(None, description="why loading failed")
    pose_source: PoseSource = Field(description="default pose source of requests and streams")
    pose_sources: list[PoseSource] | None = Field(None, description="sources this server can answer with")
    model: ServedModel | None = None
    detector: str | None = Field(None, description="person detector weights, relative to the repository or by name")
    detector_runtime: DetectorRuntime | None = None
