"""FastAPI app: create_app(settings) builds the routes; the lifespan loads the models in the background.

/healthz answers at once; /readyz (and /pose) say 503 until the detector and the pose model are loaded and
warmed up. Errors are JSON {"error": {"type", "message"}}.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from app.batcher import DynamicBatcher
from app.detector import PersonDetector
from app.errors import NotReady, ServiceError
from app.eval_routes import install_eval
from app.memory import pin_mmap_threshold
from app.metrics import Metrics
from app.pipeline import PosePipeline, PoseResult
from app.pose_model import ModelInfo, build_runner
from app.render import render
from app.request_input import parse_params, read_image_and_params
from app.schemas import CocoRecord, ErrorResponse, PoseResponse, to_coco, to_response
from app.settings import Settings
from app.ws import install_streaming
from model.network import NetConfig

log = logging.getLogger("lgm_pose.server")

IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
POSE_REQUEST_DOC: dict[str, Any] = {
    "parameters": [
        {"name": "boxes", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "JSON [[x1,y1,x2,y2(,score)], ...]: skip detection, boxes returned exactly"},
        {"name": "det_conf", "in": "query", "required": False, "schema": {"type": "number"}},
        {"name": "kpt_thr", "in": "query", "required": False, "schema": {"type": "number"}},
        {"name": "max_persons", "in": "query", "required": False, "schema": {"type": "integer"}},
        {"name": "format", "in": "query", "required": False, "schema": {"enum": ["json", "coco"]}},
        {"name": "image_id", "in": "query", "required": False, "schema": {"type": "integer"}},
    ],
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "binary"}, "boxes": {"type": "string"},
            "det_conf": {"type": "number"}, "kpt_thr": {"type": "number"}, "max_persons": {"type": "integer"}}}},
        "image/jpeg": IMAGE_BODY, "image/png": IMAGE_BODY, "image/webp": IMAGE_BODY, "image/bmp": IMAGE_BODY}},
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 413, 415, 422, 503)}


@dataclass
class ServiceState:
    """What the lifespan builds; routes read it from app.state.service."""

    settings: Settings
    metrics: Metrics
    pipeline: PosePipeline | None = None
    batcher: DynamicBatcher | None = None
    info: ModelInfo | None = None
    ready: bool = False
    load_error: str | None = None


def _load(state: ServiceState) -> tuple[PersonDetector, Any, ModelInfo, NetConfig]:
    """Blocking model loading (runs in a worker thread)."""
    s = state.settings
    if s.torch_threads:
        import torch

        torch.set_num_threads(s.torch_threads)
    runner, info, cfg = build_runner(s)
    detector = PersonDetector(s.resolved_detector_weights(), s.device, s.detector_imgsz, s.fp16)
    detector.warm_up()
    return detector, runner, info, cfg


async def _start(state: ServiceState) -> None:
    s = state.settings
    try:
        detector, runner, info, cfg = await asyncio.to_thread(_load, state)
        state.info = info
        state.metrics.set_model_info(config=info.config, input_size=f"{info.input_hw[1]}x{info.input_hw[0]}",
                                     device=info.device, backend=info.backend, weights=info.weights)
        state.batcher = DynamicBatcher(runner, max_batch=s.max_batch, max_wait_ms=s.max_wait_ms,
                                       queue_limit=s.queue_limit, metrics=state.metrics)
        await state.batcher.start()
        await state.batcher.submit(np.zeros((1, 3, *info.input_hw), dtype=np.float32))  # warm-up
        state.pipeline = PosePipeline(s, cfg, detector, state.batcher, state.metrics)
        state.ready = True
        log.info("ready: pose %s (%s) on %s/%s, weights %s; detector %s", info.config,
                 "trained/loaded" if info.weights_loaded else "RANDOM INIT", info.backend, info.device,
                 info.weights, detector.weights)
    except Exception as exc:  # stay up and say why on /readyz
        state.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("model loading failed")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service app for `settings` (default: from the environment)."""
    settings = settings or Settings()
    if settings.malloc_mmap_threshold:
        pin_mmap_threshold(settings.malloc_mmap_threshold)
    state = ServiceState(settings=settings, metrics=Metrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # asyncio.to_thread work (decode, crops, post-processing) on a fixed, small pool instead of the
        # default one, which adds threads (each with its own malloc arena) whenever load peaks
        cpu_pool = ThreadPoolExecutor(max_workers=settings.cpu_workers, thread_name_prefix="cpu-work")
        asyncio.get_running_loop().set_default_executor(cpu_pool)
        task = asyncio.create_task(_start(state))
        yield
        task.cancel()
        if state.batcher is not None:
            await state.batcher.stop()
        if state.pipeline is not None:
            state.pipeline.close()
        cpu_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="LGM-Pose service", version="0.1.0", lifespan=lifespan,
                  description="YOLO person detection + batched top-down LGM-Pose keypoints")
    app.state.service = state
    metrics = state.metrics

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        metrics.requests_in_flight.inc()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            metrics.requests_in_flight.dec()
            route = request.scope.get("route")
            metrics.request_duration.labels(route=getattr(route, "path", "other"), status=str(status)).observe(
                time.perf_counter() - start)

    def error_response(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        metrics.errors.labels(type=type_).inc()
        return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", str(exc.errors()))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return error_response(500, "internal_error", f"{type(exc).__name__}: {exc}")

    async def run_pose(request: Request) -> tuple[np.ndarray, PoseResult, dict[str, str]]:
        if not state.ready or state.pipeline is None:
            raise NotReady(state.load_error or "models are loading")
        data, raw = await read_image_and_params(request, settings)
        params = parse_params(raw, settings)
        image, result = await state.pipeline.estimate_bytes(data, params)
        return image, result, raw

    @app.post("/pose", response_model=PoseResponse | list[CocoRecord], responses=ERROR_RESPONSES,
              openapi_extra=POSE_REQUEST_DOC, summary="Detect persons and estimate their keypoints")
    async def pose(request: Request) -> Any:
        _, result, raw = await run_pose(request)
        if raw.get("format") == "coco":
            try:
                image_id = int(raw.get("image_id", 0))
            except ValueError:
                image_id = 0
            return [r.model_dump() for r in to_coco(result, image_id)]
        return to_response(result).model_dump()

    @app.post("/pose/render", responses={200: {"content": {"image/jpeg": {}}}, **ERROR_RESPONSES},
              openapi_extra=POSE_REQUEST_DOC, response_class=Response, summary="JPEG with boxes and skeletons")
    async def pose_render(request: Request) -> Response:
        image, result, raw = await run_pose(request)
        kpt_thr = parse_params(raw, settings).kpt_thr
        jpeg = await asyncio.to_thread(render, image, result, kpt_thr)
        return Response(jpeg, media_type="image/jpeg")

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="Readiness and which weights are served", responses={503: {}})
    async def readyz() -> JSONResponse:
        body: dict[str, Any] = {"ready": state.ready, "status": "ready" if state.ready else "loading"}
        if state.load_error:
            body.update(status="failed", error=state.load_error)
        if state.info is not None:
            body["model"] = state.info.as_dict()
            body["detector"] = str(settings.resolved_detector_weights())
        return JSONResponse(body, status_code=200 if state.ready else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        if state.batcher is not None:
            metrics.queue_depth.set(state.batcher.depth())
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    install_streaming(app)  # WS /ws/pose, demo page at /
    install_eval(app)  # POST /eval/coco, /eval/mpii, GET/DELETE /eval/{id}
    return app
