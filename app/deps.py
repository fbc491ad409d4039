"""What the routes share: the service state the lifespan builds, and typed FastAPI dependencies to reach it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from app.core.errors import NotReady
from app.core.metrics import Metrics
from app.core.security import check_key
from app.core.settings import Settings
from app.pipeline.batcher import DynamicBatcher
from app.pipeline.pose_pipeline import PosePipeline
from model.data.meta import PoseMeta
from model.inference.loader import ModelInfo


@dataclass
class ServiceState:
    """Built by the lifespan (models load in the background); one per app."""

    settings: Settings
    metrics: Metrics
    pipeline: PosePipeline | None = None
    batcher: DynamicBatcher | None = None
    info: ModelInfo | None = None
    meta: PoseMeta | None = None  # dataset metadata and codec of the served model
    ready: bool = False
    load_error: str | None = None
    ws_streams: int = 0


def get_service(conn: HTTPConnection) -> ServiceState:
    return conn.app.state.service


ServiceDep = Annotated[ServiceState, Depends(get_service)]


def get_settings(service: ServiceDep) -> Settings:
    return service.settings


def get_pipeline(service: ServiceDep) -> PosePipeline:
    """The pipeline once the models are loaded; 503 not_ready before."""
    if not service.ready or service.pipeline is None:
        raise NotReady(service.load_error or "models are loading")
    return service.pipeline


def get_meta(service: ServiceDep) -> PoseMeta:
    if service.meta is None:
        raise NotReady(service.load_error or "models are loading")
    return service.meta


SettingsDep = Annotated[Settings, Depends(get_settings)]
PipelineDep = Annotated[PosePipeline, Depends(get_pipeline)]
MetaDep = Annotated[PoseMeta, Depends(get_meta)]


def require_key(conn: HTTPConnection, service: ServiceDep) -> None:
    """The API key, when one is configured (app.core.security)."""
    check_key(conn, service.settings)


def require_key_for_metrics(conn: HTTPConnection, service: ServiceDep) -> None:
    if not service.settings.metrics_public:
        check_key(conn, service.settings)


KeyDep = Depends(require_key)
