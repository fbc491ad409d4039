"""POST /pose and POST /pose/render: an image in, every person's box and keypoints out (JSON, COCO or JPEG)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from app.deps import KeyDep, MetaDep, PipelineDep, SettingsDep
from app.pipeline.render import render
from app.pipeline.request import parse_params, read_image_and_params
from app.pipeline.results import PoseResult
from app.pipeline.schemas import CocoRecord, ErrorResponse, PoseResponse
from app.pipeline.sources import SOURCES

router = APIRouter(tags=["pose"], dependencies=[KeyDep])

IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
UNIT_INTERVAL = {"type": "number", "minimum": 0, "maximum": 1}
MAX_PERSONS = {"type": "integer", "minimum": 1, "maximum": 20}  # the app sets the maximum to its settings' limit
POSE_SOURCE = {"type": "string", "enum": list(SOURCES)}  # the app says its default (LGM_POSE_POSE_SOURCE)
POSE_SOURCE_DOC = ("lgm: LGM-Pose top-down on the detector's boxes; detector: YOLO11n-pose's own keypoints (LGM-Pose "
                   "does not run); fused: both, combined per joint by the rule fitted with the pose weights. With "
                   "boxes: detector is refused (422), fused answers with lgm (source_note says so)")
POSE_REQUEST_DOC: dict[str, Any] = {
    "parameters": [
        {"name": "boxes", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "JSON [[x1,y1,x2,y2(,score)], ...]: skip detection, boxes returned exactly"},
        {"name": "det_conf", "in": "query", "required": False, "schema": UNIT_INTERVAL},
        {"name": "kpt_thr", "in": "query", "required": False, "schema": UNIT_INTERVAL},
        {"name": "max_persons", "in": "query", "required": False, "schema": MAX_PERSONS},
        {"name": "pose_source", "in": "query", "required": False, "schema": POSE_SOURCE,
         "description": POSE_SOURCE_DOC},
        {"name": "format", "in": "query", "required": False, "schema": {"enum": ["json", "coco"]}},
        {"name": "image_id", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "maximum": 2**53}},
    ],
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "binary"}, "boxes": {"type": "string"},
            "det_conf": UNIT_INTERVAL, "kpt_thr": UNIT_INTERVAL, "max_persons": MAX_PERSONS,
            "pose_source": POSE_SOURCE}}},
        "image/jpeg": IMAGE_BODY, "image/png": IMAGE_BODY, "image/webp": IMAGE_BODY, "image/bmp": IMAGE_BODY}},
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 503)}


def source_headers(result: PoseResult) -> dict[str, str]:
    """`X-Pose-Source`: the source of every answer (COCO records and JPEGs have no field for it)."""
    return {"X-Pose-Source": result.source}


T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    """Return when the client closes its connection: once the body is read, the server's next message says so."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def while_connected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await `work` while the client stays; when it leaves, cancel the work (its queued decode, detection and crops
    are dropped, its memory budget freed) and end the request with ClientDisconnect (logged, nobody to answer)."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and gone.exception() is None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise ClientDisconnect()
        return await task
    finally:  # also when this handler is cancelled itself
        for t in (task, gone):
            t.cancel()
        await asyncio.gather(task, gone, return_exceptions=True)


async def run_pose(request: Request, pipeline: PipelineDep,
                   settings: SettingsDep) -> tuple[np.ndarray, PoseResult, dict[str, str]]:
    data, raw = await read_image_and_params(request, settings)
    image, result = await while_connected(request, pipeline.estimate_bytes(data, parse_params(raw, settings)))
    return image, result, raw


@router.post("/pose", response_model=PoseResponse | list[CocoRecord], responses=ERROR_RESPONSES,
             openapi_extra=POSE_REQUEST_DOC, summary="Detect persons and estimate their keypoints")
async def pose(request: Request, response: Response, pipeline: PipelineDep, settings: SettingsDep,
               meta: MetaDep) -> Any:
    _, result, raw = await run_pose(request, pipeline, settings)
    response.headers.update(source_headers(result))
    if raw.get("format") == "coco":
        image_id = int(raw.get("image_id") or 0)  # validated by parse_params
        return result.to_coco(image_id)
    return result.to_json(meta.dataset)


@router.post("/pose/render", responses={200: {"content": {"image/jpeg": {}}}, **ERROR_RESPONSES},
             openapi_extra=POSE_REQUEST_DOC, response_class=Response, summary="JPEG with boxes and skeletons")
async def pose_render(request: Request, pipeline: PipelineDep, settings: SettingsDep, meta: MetaDep) -> Response:
    image, result, raw = await run_pose(request, pipeline, settings)
    kpt_thr = parse_params(raw, settings).kpt_thr
    jpeg = await asyncio.to_thread(render, image, result, meta.dataset.skeleton, kpt_thr)
    return Response(jpeg, media_type="image/jpeg", headers=source_headers(result))
