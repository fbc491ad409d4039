"""HTTP API of offline evaluation: POST /eval/coco, POST /eval/mpii, GET /eval, GET/DELETE /eval/{id}.

Requests are validated by app.evaluation.spec (paths confined to the data root); the jobs are run by
app.evaluation.jobs (one at a time, background priority in the shared batcher). A request body is read only after
the API key is checked, and only up to `max_json_bytes` (413 beyond), then parsed by pydantic's JSON parser:
nothing an unauthenticated client sends is buffered or parsed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError

from app.core.errors import Conflict, NotFound
from app.core.http import read_capped
from app.deps import JobsDep, KeyDep, ServiceDep
from app.evaluation.job import EvalJob
from app.evaluation.jobs import EvalJobManager
from app.evaluation.spec import EvalRequest, build_spec
from app.pipeline.schemas import ErrorResponse
from app.state import ServiceState

CANCEL_WAIT_S = 5.0
router = APIRouter(prefix="/eval", tags=["evaluation"], dependencies=[KeyDep],
                   responses={code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 422, 503)})
EVAL_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": EvalRequest.model_json_schema()}}}}


async def eval_request(request: Request, service: ServiceDep, _key: Annotated[None, KeyDep]) -> EvalRequest:
    """The body as an EvalRequest: read after the key check, at most `max_json_bytes` (413), 422 if invalid."""
    body = await read_capped(request, service.settings.max_json_bytes)
    try:
        return EvalRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


EvalBody = Annotated[EvalRequest, Depends(eval_request)]


def find(jobs: EvalJobManager, job_id: str) -> EvalJob:
    """The job, this replica's or (shared store) another's; 404 when there is none."""
    job = jobs.get(job_id)
    if job is None:
        raise NotFound(f"no evaluation job {job_id!r}")
    return job


def start(kind: Literal["coco", "mpii"], req: EvalRequest, service: ServiceState, jobs: EvalJobManager) -> JSONResponse:
    service.ready_pipeline()  # 503 not_ready while the models load
    spec = build_spec(kind, req, Path(service.settings.data_root), service.settings.detector_conf)
    job = jobs.submit(spec)
    return JSONResponse({"id": job.id, "state": job.state, "url": f"/eval/{job.id}"}, status_code=202)


@router.post("/coco", status_code=202, summary="Start a COCO keypoint AP evaluation (pycocotools)",
             openapi_extra=EVAL_BODY)
async def eval_coco(req: EvalBody, service: ServiceDep, jobs: JobsDep) -> JSONResponse:
    return start("coco", req, service, jobs)


@router.post("/mpii", status_code=202, summary="Start an MPII PCKh@0.5 evaluation", openapi_extra=EVAL_BODY)
async def eval_mpii(req: EvalBody, service: ServiceDep, jobs: JobsDep) -> JSONResponse:
    return start("mpii", req, service, jobs)


@router.get("", summary="Evaluation jobs, oldest first (without their full results)")
async def list_jobs(jobs: JobsDep) -> dict[str, Any]:
    items = []
    for job in jobs.list():
        item = job.as_dict()
        result = item.pop("result")
        item["table"] = result.get("table") if result else None
        items.append(item)
    return {"jobs": items}


@router.get("/{job_id}", summary="State, progress and (when done) the table of a job")
async def get_job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    return find(jobs, job_id).as_dict()


@router.get("/{job_id}/results", summary="COCO keypoint results json of a finished COCO job",
            response_class=FileResponse)
async def job_results(job_id: str, jobs: JobsDep) -> FileResponse:
    job = find(jobs, job_id)
    path = job.workdir / "keypoints.json" if job.workdir is not None else None
    if job.state != "done" or job.spec.kind != "coco" or path is None or not path.is_file():
        raise Conflict(f"job {job_id} has no keypoint results (state {job.state}, {job.spec.kind})")
    return FileResponse(path, media_type="application/json", filename=f"eval_{job_id}_keypoints.json")


@router.delete("/{job_id}", summary="Cancel a job; answers once it stopped (202 if still stopping)")
async def cancel_job(job_id: str, jobs: JobsDep) -> JSONResponse:
    job = find(jobs, job_id)
    if not jobs.cancel(job):
        raise Conflict(f"evaluation job {job_id} already {job.state}")
    deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_S
    while job.state == "running" and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        job = find(jobs, job_id)  # another replica's job: as it saves it
    return JSONResponse(job.as_dict(), status_code=202 if job.state == "running" else 200)
