"""The service's state: what the lifespan builds (models load in the background) and the one readiness check."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import NotReady
from app.core.metrics import Metrics
from app.core.settings import Settings
from app.pipeline.batcher import DynamicBatcher
from app.pipeline.pose_pipeline import PosePipeline
from model.data.meta import PoseMeta
from model.inference.loader import ModelInfo


@dataclass
class ServiceState:
    """One per app; routes reach it through `app.deps`, evaluation jobs and streams are given it."""

    settings: Settings
    metrics: Metrics
    pipeline: PosePipeline | None = None
    batcher: DynamicBatcher | None = None
    info: ModelInfo | None = None
    detector_runtime: dict[str, str | None] | None = None  # the detector's backend, precision, chosen_because
    meta: PoseMeta | None = None  # dataset metadata and codec of the served model
    ready: bool = False
    load_error: str | None = None
    ws_streams: int = 0

    def ready_pipeline(self) -> PosePipeline:
        """The pipeline once the models are loaded and warmed up; NotReady (503, Retry-After) before."""
        if not self.ready or self.pipeline is None:
            raise NotReady(self.load_error or "models are loading")
        return self.pipeline
