"""Typed FastAPI dependencies: how a route reaches the service state, its settings, pipeline, model metadata and
evaluation jobs, and the API key check (as FastAPI's full-stack template's `api/deps.py`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from app.core.security import check_key
from app.core.settings import Settings
from app.evaluation.jobs import EvalJobManager
from app.pipeline.pose_pipeline import PosePipeline
from app.state import ServiceState
from model.data.meta import PoseMeta


def get_service(conn: HTTPConnection) -> ServiceState:
    return conn.app.state.service


ServiceDep = Annotated[ServiceState, Depends(get_service)]


def get_settings(service: ServiceDep) -> Settings:
    return service.settings


def get_pipeline(service: ServiceDep) -> PosePipeline:
    """The pipeline once the models are loaded; 503 not_ready before."""
    return service.ready_pipeline()


def get_meta(service: ServiceDep) -> PoseMeta:
    """The served model's dataset metadata and codec; 503 not_ready before the models are loaded."""
    service.ready_pipeline()
    assert service.meta is not None  # set before the service is ready
    return service.meta


def get_jobs(conn: HTTPConnection) -> EvalJobManager:
    """The evaluation job manager `create_app` made for this app."""
    return conn.app.state.eval_jobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
PipelineDep = Annotated[PosePipeline, Depends(get_pipeline)]
MetaDep = Annotated[PoseMeta, Depends(get_meta)]
JobsDep = Annotated[EvalJobManager, Depends(get_jobs)]


def require_key(conn: HTTPConnection, service: ServiceDep) -> None:
    """The API key, when one is configured (app.core.security)."""
    check_key(conn, service.settings)


def require_key_for_metrics(conn: HTTPConnection, service: ServiceDep) -> None:
    if not service.settings.metrics_public:
        check_key(conn, service.settings)


KeyDep = Depends(require_key)
