"""Liveness, readiness (which weights are served) and the Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from app.deps import ServiceDep, require_key_for_metrics
from app.pipeline.schemas import DetectorRuntime, ErrorResponse, ReadyResponse, ServedModel
from model.inference.loader import public_path

router = APIRouter(tags=["health"])

@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}

@router.get("/readyz", summary="Readiness and what is served", response_model=ReadyResponse,
            responses={503: {"model": ReadyResponse}})
async def readyz(service: ServiceDep) -> JSONResponse:
    body = ReadyResponse(ready=service.ready, status="ready" if service.ready else "loading",
                         pose_source=service.settings.pose_source)
    if service.load_error:
        body.status, body.error = "failed", service.load_error
    if service.info is not None:
        body.model = ServedModel.model_validate(service.info.as_dict())
        body.detector = public_path(service.settings.resolved_detector_weights())
    if service.detector_runtime is not None:
        body.detector_runtime = DetectorRuntime.model_validate(service.detector_runtime)
    if service.pipeline is not None:
        body.pose_sources = list(service.pipeline.sources())
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if service.ready else 503)

@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            dependencies=[Depends(require_key_for_metrics)], responses={401: {"model": ErrorResponse}})
async def prometheus(service: ServiceDep) -> Response:
    if service.batcher is not None:
        service.metrics.queue_depth.set(service.batcher.depth())
    data, content_type = service.metrics.render()
    return Response(data, media_type=content_type)
