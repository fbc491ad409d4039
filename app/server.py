"""FastAPI app: create_app(settings) wires the routers; the lifespan loads the models in the background.

/healthz answers at once; /readyz (and /pose) say 503 until the detector and the pose model are loaded and
warmed up. Errors are JSON {"error": {"type", "message", "request_id"}} (app.core.http). Routes: app/routes/ (one
router per file); the WebSocket stream: app/stream/; state: app/state.py, dependencies: app/deps.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.core.errors import ServiceError
from app.core.http import SecurityHeaders, error_response, request_id
from app.core.memory import pin_mmap_threshold
from app.core.metrics import Metrics
from app.core.security import HostAllowList
from app.core.settings import Settings
from app.deps import KeyDep
from app.evaluation.jobs import EvalJobManager
from app.evaluation.store import JobStore
from app.pipeline.batcher import DynamicBatcher
from app.pipeline.compute_gate import ComputeGate
from app.pipeline.pose_pipeline import PosePipeline
from app.routes import eval as eval_routes
from app.routes import health, pose, stream
from app.state import ServiceState
from model.inference.engines import OpenVinoEngine
from model.inference.loader import build_detector, build_runner
from model.inference.topdown import TopDown

log = logging.getLogger("lgm_pose.server")
CLIENT_CLOSED = 499  # the status logged for requests whose client disconnected (nginx's convention)


def _load(s: Settings):
    """Blocking model loading (runs in a worker thread)."""
    if s.torch_threads and "torch" in (s.backend, s.detector_backend):
        import torch

        torch.set_num_threads(s.torch_threads)
    runner, info = build_runner(s.pose_weights, s.pose_config, s.backend, s.device, s.fp16, s.torch_threads,
                                s.onnx_cache_dir, s.precision)
    log.info("pose network: %s/%s, %s", info.backend, info.precision, info.chosen_because)
    detector = build_detector(s.resolved_detector_weights(), s.device, s.detector_imgsz, s.fp16, s.detector_backend,
                              s.onnx_cache_dir, precision=s.detector_precision)
    log.info("detector: %s/%s, %s", detector.runtime, detector.precision, detector.choice)
    detector.warm_up()
    return detector, runner, info


async def _start(state: ServiceState) -> None:
    s = state.settings
    try:
        detector, runner, info = await asyncio.to_thread(_load, s)
        if s.pose_source == "fused" and runner.fusion is None:
            if "pose_source" in s.model_fields_set:  # asked for by name: say so rather than serve something else
                raise RuntimeError(f"LGM_POSE_POSE_SOURCE=fused, but the pose weights {info.weights} carry no fitted "
                                   "fusion rule (run `lgm-pose fit-fusion`, or choose 'detector' or 'lgm')")
            log.warning("the pose weights %s carry no fitted fusion rule: the default pose source is 'detector'",
                        info.weights)
            s.pose_source = "detector"
        state.info, state.meta = info, runner.meta
        state.metrics.set_model_info(config=info.config, input_size=f"{info.input_hw[1]}x{info.input_hw[0]}",
                                     device=info.device, backend=info.backend, weights=info.weights,
                                     precision=info.precision, chosen_because=info.chosen_because or "",
                                     detector_backend=detector.runtime, detector_precision=detector.precision,
                                     detector_chosen_because=detector.choice or "")
        state.detector_runtime = {"backend": detector.runtime, "precision": detector.precision,
                                  "chosen_because": detector.choice}
        gate = ComputeGate(s.compute_slots)
        state.batcher = DynamicBatcher(runner, max_batch=s.max_batch, max_wait_ms=s.max_wait_ms,
                                       queue_limit=s.queue_limit, metrics=state.metrics, gate=gate)
        # a pass per batch size the batcher may form, before any request (OpenVINO compiles each size once)
        for batch in range(2, min(s.max_batch, OpenVinoEngine.STATIC_BATCHES) + 1):
            await asyncio.to_thread(runner, np.zeros((batch, 3, *info.input_hw), np.float32))
        await state.batcher.start()
        await state.batcher.submit(np.zeros((1, 3, *info.input_hw), dtype=np.float32))  # warm-up
        state.pipeline = PosePipeline(s, TopDown(runner.meta, s.flip_test), detector, state.batcher, state.metrics,
                                      gate, runner.fusion)
        state.ready = True
        log.info("ready: pose %s (%s, %s joints) on %s/%s/%s, weights %s; detector %s on %s/%s", info.config,
                 "trained/loaded" if info.weights_loaded else "RANDOM INIT", info.dataset, info.backend,
                 info.precision, info.device, info.weights, detector.weights, detector.runtime, detector.precision)
    except Exception as exc:  # stay up and say why on /readyz
        state.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("model loading failed")


def openapi_schema(app: FastAPI, settings: Settings) -> dict:
    """FastAPI's schema, with what depends on the settings (max_persons' bound, the default pose_source)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in ("/pose", "/pose/render"):
            operation = schema["paths"].get(path, {}).get("post", {})
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
            params = {p["name"]: p["schema"] for p in operation.get("parameters", [])}
            fields = form.get("properties", {})
            for bound in (params.get("max_persons", {}), fields.get("max_persons", {})):
                bound["maximum"] = settings.max_persons
            for source in (params.get("pose_source", {}), fields.get("pose_source", {})):
                source["default"] = settings.pose_source
        app.openapi_schema = schema
    return app.openapi_schema


def add_docs(app: FastAPI) -> None:
    """/openapi.json, /docs and /redoc as FastAPI serves them, but with the API key like every other route (the
    schema maps what a stranger could try)."""
    @app.get("/openapi.json", include_in_schema=False, dependencies=[KeyDep])
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[KeyDep])
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - Swagger UI")

    @app.get("/redoc", include_in_schema=False, dependencies=[KeyDep])
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the schema documents for a concrete request path."""
    for template, operations in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(template)), path):
            return sorted(m.upper() for m in operations)
    return []


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service app for `settings` (default: from the environment)."""
    settings = settings or Settings()
    if settings.malloc_mmap_threshold:
        pin_mmap_threshold(settings.malloc_mmap_threshold)
    state = ServiceState(settings=settings, metrics=Metrics())
    jobs = EvalJobManager(state, Path(settings.data_root), store=JobStore(settings.jobs_dir) if settings.jobs_dir
                          else None, shared=settings.jobs_shared)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # asyncio.to_thread work (decode, crops, post-processing) on a fixed, small pool instead of the
        # default one, which adds threads (each with its own malloc arena) whenever load peaks
        cpu_pool = ThreadPoolExecutor(max_workers=settings.cpu_workers, thread_name_prefix="cpu-work")
        asyncio.get_running_loop().set_default_executor(cpu_pool)
        task = asyncio.create_task(_start(state))
        yield
        await asyncio.to_thread(jobs.shutdown)  # before the batcher stops
        task.cancel()
        if state.batcher is not None:
            await state.batcher.stop()
        if state.pipeline is not None:
            state.pipeline.close()
        cpu_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="LGM-Pose service", version="0.1.0", lifespan=lifespan,
                  description="YOLO person detection + keypoints from a pose source: YOLO11n-pose's own (detector), "
                  "batched top-down LGM-Pose (lgm) or both fused (fused)", docs_url=None, redoc_url=None,
                  openapi_url=None)  # add_docs: the same, behind the API key
    if settings.allowed_origins:  # browsers on these origins may call the API (the service's own always can)
        app.add_middleware(CORSMiddleware, allow_origins=settings.allowed_origins, allow_methods=["GET", "POST",
                           "DELETE"], allow_headers=["Authorization", "Content-Type", "X-Request-ID"])
    app.state.service, app.state.eval_jobs = state, jobs  # reached through app.deps
    metrics = state.metrics

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        request.state.request_id = request_id(request.headers.get("x-request-id"))
        metrics.requests_in_flight.inc()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-ID"] = request.state.request_id
            return response
        finally:
            metrics.requests_in_flight.dec()
            route = request.scope.get("route")
            metrics.request_duration.labels(route=getattr(route, "path", "other"), status=str(status)).observe(
                time.perf_counter() - start)

    def answer_error(request: Request, status: int, type_: str, message: str,
                     headers: dict[str, str] | None = None) -> JSONResponse:
        """The error answer (app.core.http), counted by type."""
        metrics.errors.labels(type=type_).inc()
        rid = getattr(request.state, "request_id", None) or request_id(None)
        return error_response(status, type_, message, rid, headers)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return answer_error(request, exc.status, exc.type, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only those of the first route that matched
            headers["Allow"] = ", ".join(allowed_methods(app, request.url.path)) or headers.get("Allow", "")
        return answer_error(request, exc.status_code, type_, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
        return answer_error(request, 422, "validation_error", where[:1000])  # never the raw input

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> Response:
        """The client went away mid-request: its own label (not a server error), nobody to answer."""
        metrics.errors.labels(type="client_disconnect").inc()
        log.info("client left during %s (request id %s)", request.url.path, getattr(request.state, "request_id", "-"))
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", "-")
        log.exception("internal error on %s (request id %s)", request.url.path, rid)
        return answer_error(request, 500, "internal_error", f"internal error; request id {rid}")

    app.openapi = lambda: openapi_schema(app, settings)
    app.include_router(pose.router)
    app.include_router(health.router)
    stream.install(app)  # WS /ws/pose, demo page at /
    app.include_router(eval_routes.router)  # POST /eval/coco, /eval/mpii, GET/DELETE /eval/{id}
    if settings.docs:
        add_docs(app)
    app.add_middleware(SecurityHeaders)  # CSP, X-Frame-Options, nosniff, Referrer-Policy on every answer
    app.add_middleware(HostAllowList, settings=settings)  # outermost: a Host not served here gets 400 first
    return app
