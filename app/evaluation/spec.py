"""Evaluation requests validated against the data root: the path guard and the job spec it produces.

Every path in a request is relative to the configured data root (LGM_POSE_DATA_ROOT) and must stay inside it:
absolute paths, '..' and symlinks leading out of the root are refused with 400 {"error": {"type": "bad_path"}}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.errors import BadDataset, BadParameter, BadPath
from app.pipeline.sources import PoseSource
from model.data.layout import DEFAULT_COCO_SPLIT, mpii_files, resolve_split

SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class EvalSpec:
    """A validated evaluation: absolute paths (all inside the data root) and the engine's options."""

    kind: Literal["coco", "mpii"]
    ann_file: Path
    image_dir: Path
    boxes: str | Path  # 'gt', 'detector' or a detection-results json
    flip: bool
    max_images: int | None
    det_conf: float
    request: dict[str, Any]
    source: str = "lgm"  # the pose source evaluated (app.pipeline.sources)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ann_file": str(self.ann_file), "image_dir": str(self.image_dir),
                "boxes": str(self.boxes), "flip": self.flip, "max_images": self.max_images, "det_conf": self.det_conf,
                "request": self.request, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSpec:
        boxes = data["boxes"] if data["boxes"] in ("gt", "detector") else Path(data["boxes"])
        return cls(data["kind"], Path(data["ann_file"]), Path(data["image_dir"]), boxes, data["flip"],
                   data["max_images"], data["det_conf"], data["request"], data.get("source", "lgm"))


class EvalRequest(BaseModel):
    """Body of POST /eval/coco and /eval/mpii."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(..., description="dataset folder, relative to the data root")
    split: str | None = Field(None, description="split name (default: the only one, else val2017 / valid)")
    boxes: str = Field("gt", description="'gt', 'detector' (the service's detector) or a COCO detection-results "
                                         "json relative to the data root (COCO only)")
    flip: bool = Field(False, description="flip test")
    max_images: int | None = Field(None, ge=1, description="first N images (MPII: N persons) only")
    det_conf: float | None = Field(None, ge=0.0, le=1.0, description="detector threshold for boxes='detector'")
    source: PoseSource = Field("lgm", description="pose source evaluated (COCO): 'lgm' (LGM-Pose on the boxes, the "
                               "default here), 'detector' or 'fused' (both need boxes='detector'; they run through the "
                               "service's own pipeline, at background priority)")


def resolve_in_root(root: Path, rel: str, what: str) -> Path:
    """`rel` resolved (symlinks followed) inside `root`; BadPath for absolute paths, '..' or an escape."""
    if not rel or "\x00" in rel or "\\" in rel:
        raise BadPath(f"{what}: give a non-empty path relative to the data root, with '/' separators")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or PureWindowsPath(rel).drive or rel.startswith("~"):
        raise BadPath(f"{what} {rel!r}: absolute paths are not allowed, give a path relative to the data root")
    if ".." in pure.parts:
        raise BadPath(f"{what} {rel!r}: '..' is not allowed in paths")
    return ensure_inside(root, root.resolve() / pure, what, rel)


def ensure_inside(root: Path, path: Path, what: str, shown: str) -> Path:
    """`path` resolved; BadPath when it lies outside the (resolved) data root, e.g. through a symlink."""
    base, full = root.resolve(), path.resolve()
    if not full.is_relative_to(base):
        raise BadPath(f"{what} {shown!r} leads outside the data root (symlink?)")
    return full


def build_spec(kind: Literal["coco", "mpii"], req: EvalRequest, root: Path, default_det_conf: float) -> EvalSpec:
    """Validate a request against the data root: the annotation file, image folder and boxes it names."""
    data_dir = resolve_in_root(root, req.dataset, "dataset")
    if not data_dir.is_dir():
        raise BadDataset(f"dataset {req.dataset!r} is not a folder under the data root")
    if req.split is not None and (not SPLIT_NAME.match(req.split) or ".." in req.split):
        raise BadPath(f"split {req.split!r}: letters, digits, '_', '-' and '.' only")
    try:
        if kind == "mpii":
            ann, images = mpii_files(data_dir, req.split)
        else:
            found = resolve_split(data_dir, req.split, DEFAULT_COCO_SPLIT)
            ann, images = found.annotation, found.images
    except FileNotFoundError as exc:
        raise BadDataset(str(exc).replace(str(root.resolve()) + "/", "")) from None
    ann = ensure_inside(root, ann, "annotation file", str(ann.relative_to(data_dir)))
    images = ensure_inside(root, images, "image folder", str(images.relative_to(data_dir)))
    boxes: str | Path = req.boxes
    if kind == "mpii" and req.boxes != "gt":
        raise BadDataset("boxes apply to COCO only (MPII crops come from its center/scale)")
    if req.boxes not in ("gt", "detector"):
        boxes = resolve_in_root(root, req.boxes, "boxes")
        if not boxes.is_file():
            raise BadDataset(f"boxes {req.boxes!r}: no such detection-results file under the data root")
    if req.source != "lgm" and kind == "mpii":
        raise BadParameter(f"source {req.source!r}: MPII evaluation crops from its center/scale, no detector runs; "
                           "only 'lgm' applies")
    if req.source != "lgm" and req.boxes != "detector":
        raise BadParameter(f"source {req.source!r} needs the detector's keypoints: give boxes='detector' "
                           f"(boxes {req.boxes!r} have none)")
    det_conf = default_det_conf if req.det_conf is None else req.det_conf
    return EvalSpec(kind=kind, ann_file=ann, image_dir=images, boxes=boxes, flip=req.flip,
                    max_images=req.max_images, det_conf=det_conf, request=req.model_dump(), source=req.source)
