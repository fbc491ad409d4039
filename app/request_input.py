"""Read one pose request: the image bytes (multipart field `image` or a raw image body) and its parameters."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request

from app.decode_image import check_media_type
from app.errors import BadBoxes, BadParameter, EmptyBody, TooManyBytes, UnsupportedMediaType
from app.pipeline import PoseParams
from app.settings import Settings

MULTIPART_SLACK = 64 * 1024  # form boundaries and small fields on top of the image itself
PARAM_NAMES = ("boxes", "det_conf", "kpt_thr", "max_persons", "format", "image_id")


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooManyBytes(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_image_and_params(request: Request, settings: Settings) -> tuple[bytes, dict[str, str]]:
    """Image bytes and raw parameters (query string, overridden by form fields)."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise TooManyBytes(f"request of {declared} bytes exceeds the limit of {limit} bytes")
    raw: dict[str, str] = {k: v for k, v in request.query_params.items() if k in PARAM_NAMES}
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=len(PARAM_NAMES) + 1)
        try:
            upload = form.get("image")
            if upload is None:
                raise EmptyBody("multipart request has no field 'image'")
            if not isinstance(upload, UploadFile):
                raise UnsupportedMediaType("field 'image' must be a file upload")
            data = await upload.read(limit + 1)
            if len(data) > limit:
                raise TooManyBytes(f"image exceeds the limit of {limit} bytes")
            raw.update({k: str(v) for k, v in form.items() if k in PARAM_NAMES and isinstance(v, str)})
        finally:
            await form.close()
        return data, raw
    if not content_type:
        body = await _read_body(request, limit)
        if not body:
            raise EmptyBody("empty request: send an image")
        raise UnsupportedMediaType("missing Content-Type: send multipart/form-data or an image/* body")
    check_media_type(content_type)
    return await _read_body(request, limit), raw


def _number(raw: dict[str, str], name: str, default: float, lo: float, hi: float) -> float:
    if raw.get(name) in (None, ""):
        return default
    try:
        value = float(raw[name])
    except ValueError as exc:
        raise BadParameter(f"{name} must be a number, got {raw[name]!r}") from exc
    if not (lo <= value <= hi):
        raise BadParameter(f"{name} must be within [{lo}, {hi}], got {value}")
    return value


def parse_boxes(text: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """JSON [[x1,y1,x2,y2(,score)], ...] -> boxes (N, 4) and scores (N,) (1.0 where not given)."""
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadBoxes(f"boxes is not valid JSON: {exc}") from exc
    if not isinstance(value, list):
        raise BadBoxes("boxes must be a JSON list of [x1, y1, x2, y2] or [x1, y1, x2, y2, score]")
    if len(value) > limit:
        raise BadBoxes(f"{len(value)} boxes exceed the limit of {limit}")
    boxes, scores = [], []
    for i, box in enumerate(value):
        ok = isinstance(box, list) and len(box) in (4, 5) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box)
        if not ok:
            raise BadBoxes(f"box {i} must be [x1, y1, x2, y2] or [x1, y1, x2, y2, score] of finite numbers")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise BadBoxes(f"box {i} must have x2 > x1 and y2 > y1, got {box[:4]}")
        boxes.append([float(v) for v in box[:4]])
        scores.append(float(box[4]) if len(box) == 5 else 1.0)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64)


def parse_params(raw: dict[str, str], settings: Settings) -> PoseParams:
    """Validated PoseParams from raw strings; request limits never exceed the service settings."""
    max_persons = int(_number(raw, "max_persons", settings.max_persons, 1, settings.max_persons))
    params = PoseParams(det_conf=_number(raw, "det_conf", settings.detector_conf, 0.0, 1.0),
                        kpt_thr=_number(raw, "kpt_thr", settings.kpt_score_threshold, 0.0, 1.0),
                        max_persons=max_persons)
    if raw.get("boxes"):
        params.boxes, params.box_scores = parse_boxes(raw["boxes"], settings.max_persons)
        params.max_persons = settings.max_persons
    fmt = raw.get("format", "json")
    if fmt not in ("json", "coco"):
        raise BadParameter(f"format must be 'json' or 'coco', got {fmt!r}")
    return params
