"""Liveness, readiness (which weights are served) and the Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from app.deps import ServiceDep, require_key_for_metrics
from app.pipeline.schemas import ErrorResponse
from model.inference.loader import public_path

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readyz", summary="Readiness and which weights are served", responses={503: {}})
async def readyz(service: ServiceDep) -> JSONResponse:
    body: dict[str, Any] = {"ready": service.ready, "status": "ready" if service.ready else "loading",
                            "pose_source": service.settings.pose_source}  # the default of requests and streams
    if service.load_error:
        body.update(status="failed", error=service.load_error)
    if service.info is not None:
        body["model"] = service.info.as_dict()
        body["detector"] = public_path(service.settings.resolved_detector_weights())
    if service.pipeline is not None:
        body["pose_sources"] = service.pipeline.sources()
    return JSONResponse(body, status_code=200 if service.ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            dependencies=[Depends(require_key_for_metrics)], responses={401: {"model": ErrorResponse}})
async def prometheus(service: ServiceDep) -> Response:
    if service.batcher is not None:
        service.metrics.queue_depth.set(service.batcher.depth())
    data, content_type = service.metrics.render()
    return Response(data, media_type=content_type)
