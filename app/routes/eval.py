"""HTTP API of offline evaluation: POST /eval/coco, POST /eval/mpii, GET /eval, GET/DELETE /eval/{id}.

Requests are validated by app.evaluation.spec (paths confined to the data root); the jobs are run by app.evaluation.jobs
(one at a time, background priority in the shared batcher).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, JSONResponse

from app.core.errors import Conflict, NotFound, NotReady
from app.deps import KeyDep
from app.evaluation.jobs import EvalJob, EvalJobManager
from app.evaluation.spec import EvalRequest, build_spec
from app.evaluation.store import JobStore
from app.pipeline.schemas import ErrorResponse

CANCEL_WAIT_S = 5.0


def install_eval(app: FastAPI) -> EvalJobManager:
    """Add the /eval routes and the job manager (app.state.eval_jobs) to the service app."""
    service = app.state.service
    jobs_dir = service.settings.jobs_dir
    manager = EvalJobManager(service, Path(service.settings.data_root), store=JobStore(jobs_dir) if jobs_dir else None,
                             shared=service.settings.jobs_shared)
    app.state.eval_jobs = manager

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(manager.shutdown)  # runs before the batcher is stopped

    errors = {code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 422, 503)}
    router = APIRouter(prefix="/eval", tags=["evaluation"], lifespan=lifespan, dependencies=[KeyDep],
                       responses=errors)

    def find(job_id: str) -> EvalJob:
        job = manager.get(job_id)
        if job is None:
            raise NotFound(f"no evaluation job {job_id!r}")
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
            raise Conflict(f"job {job_id} has no keypoint results (state {job.state}, {job.spec.kind})")
        return FileResponse(path, media_type="application/json", filename=f"eval_{job_id}_keypoints.json")

    @router.delete("/{job_id}", summary="Cancel a job; answers once it stopped (202 if still stopping)")
    async def cancel_job(job_id: str) -> JSONResponse:
        job = find(job_id)
        if not manager.cancel(job):
            raise Conflict(f"evaluation job {job_id} already {job.state}")
        deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_S
        while job.state == "running" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            job = find(job_id)  # another replica's job: as it saves it
        return JSONResponse(job.as_dict(), status_code=202 if job.state == "running" else 200)

    app.include_router(router)
    return manager
