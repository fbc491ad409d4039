"""HTTP API of offline evaluation: POST /eval/coco, POST /eval/mpii, GET /eval, GET/DELETE /eval/{id}.

Every path in a request is relative to the configured data root (LGM_POSE_DATA_ROOT) and must stay inside it:
absolute paths, '..' and symlinks leading out of the root are refused with 400 {"error": {"type": "bad_path"}}.
The jobs themselves are run by app.eval_jobs (one at a time, background priority in the shared batcher).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.errors import NotReady, ServiceError
from app.eval_jobs import EvalJob, EvalJobManager
from model.eval_cli import DEFAULT_COCO_SPLIT, mpii_files
from model.layout import resolve_split

SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CANCEL_WAIT_S = 5.0


class BadPath(ServiceError):
    status = 400
    type = "bad_path"


class BadDataset(ServiceError):
    status = 400
    type = "bad_dataset"


class EvalNotFound(ServiceError):
    status = 404
    type = "not_found"


class EvalConflict(ServiceError):
    status = 409
    type = "conflict"


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
    det_conf = default_det_conf if req.det_conf is None else req.det_conf
    return EvalSpec(kind=kind, ann_file=ann, image_dir=images, boxes=boxes, flip=req.flip,
                    max_images=req.max_images, det_conf=det_conf, request=req.model_dump())


def install_eval(app: FastAPI) -> EvalJobManager:
    """Add the /eval routes and the job manager (app.state.eval_jobs) to the service app."""
    service = app.state.service
    manager = EvalJobManager(service, Path(service.settings.data_root))
    app.state.eval_jobs = manager

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(manager.shutdown)  # runs before the batcher is stopped

    router = APIRouter(prefix="/eval", tags=["evaluation"], lifespan=lifespan)

    def find(job_id: str) -> EvalJob:
        job = manager.jobs.get(job_id)
        if job is None:
            raise EvalNotFound(f"no evaluation job {job_id!r}")
        return job

    def start(kind: Literal["coco", "mpii"], req: EvalRequest) -> JSONResponse:
        if not service.ready or service.batcher is None:
            raise NotReady(service.load_error or "models are loading")
        spec = build_spec(kind, req, Path(service.settings.data_root), service.settings.detector_conf)
        job = manager.submit(spec)
        return JSONResponse({"id": job.id, "state": job.state, "url": f"/eval/{job.id}"}, status_code=202)

    @router.post("/coco", status_code=202, summary="Start a COCO keypoint AP evaluation (pycocotools)")
    async def eval_coco(req: EvalRequest) -> JSONResponse:
        return start("coco", req)

    @router.post("/mpii", status_code=202, summary="Start an MPII PCKh@0.5 evaluation")
    async def eval_mpii(req: EvalRequest) -> JSONResponse:
        return start("mpii", req)

    @router.get("", summary="Evaluation jobs, oldest first (without their full results)")
    async def list_jobs() -> dict[str, Any]:
        jobs = []
        for job in manager.list():
            item = job.as_dict()
            result = item.pop("result")
            item["table"] = result.get("table") if result else None
            jobs.append(item)
        return {"jobs": jobs}

    @router.get("/{job_id}", summary="State, progress and (when done) the table of a job")
    async def get_job(job_id: str) -> dict[str, Any]:
        return find(job_id).as_dict()

    @router.get("/{job_id}/results", summary="COCO keypoint results json of a finished COCO job",
                response_class=FileResponse)
    async def job_results(job_id: str) -> FileResponse:
        job = find(job_id)
        path = job.workdir / "keypoints.json" if job.workdir is not None else None
        if job.state != "done" or job.spec.kind != "coco" or path is None or not path.is_file():
            raise EvalConflict(f"job {job_id} has no keypoint results (state {job.state}, {job.spec.kind})")
        return FileResponse(path, media_type="application/json", filename=f"eval_{job_id}_keypoints.json")

    @router.delete("/{job_id}", summary="Cancel a job; answers once it stopped (202 if still stopping)")
    async def cancel_job(job_id: str) -> JSONResponse:
        job = find(job_id)
        if not manager.cancel(job):
            raise EvalConflict(f"evaluation job {job_id} already {job.state}")
        deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_S
        while job.state == "running" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return JSONResponse(job.as_dict(), status_code=202 if job.state == "running" else 200)

    app.include_router(router)
    return manager
