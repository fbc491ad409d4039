"""Read one pose request: the image bytes (multipart field `image` or a raw image body) and its parameters."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from app.core.errors import BadBoxes, BadMultipart, BadParameter, EmptyBody, TooManyBytes, UnsupportedMediaType
from app.core.http import capped_stream, read_capped, refuse_declared
from app.core.settings import Settings
from app.pipeline.decode import check_media_type
from app.pipeline.pose_pipeline import PoseParams
from app.pipeline.sources import parse_source

MULTIPART_SLACK = 64 * 1024  # form boundaries and small fields on top of the image itself
PARAM_NAMES = ("boxes", "det_conf", "kpt_thr", "max_persons", "pose_source", "format", "image_id")


async def read_image_and_params(request: Request, settings: Settings) -> tuple[bytes, dict[str, str]]:
    """Image bytes and raw parameters (query string, overridden by form fields)."""
    limit = settings.max_upload_bytes
    refuse_declared(request, limit + MULTIPART_SLACK)
    raw: dict[str, str] = {k: v for k, v in request.query_params.items() if k in PARAM_NAMES}
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        # parsed from the size-limited stream: nothing past the limit is read, spooled or written to disk
        parser = MultiPartParser(request.headers, capped_stream(request, limit + MULTIPART_SLACK), max_files=1,
                                 max_fields=len(PARAM_NAMES) + 1)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise BadMultipart(f"malformed multipart body: {exc.message}") from None
        try:
            upload = form.get("image")
            if upload is None:
                raise EmptyBody("multipart request has no field 'image'")
            if not isinstance(upload, UploadFile):
                raise UnsupportedMediaType("field 'image' must be a file upload")
            data = await upload.read(limit + 1)
            if len(data) > limit:
                raise TooManyBytes(f"image exceeds the limit of {limit} bytes")
            fields = {k: str(v) for k, v in form.items() if k in PARAM_NAMES and isinstance(v, str)}
            if fields:
                parse_params(raw, settings)  # a query value a form field overrides must be valid too
            raw.update(fields)
        finally:
            await form.close()
        return data, raw
    if not content_type:
        body = await read_capped(request, limit)
        if not body:
            raise EmptyBody("empty request: send an image")
        raise UnsupportedMediaType("missing Content-Type: send multipart/form-data or an image/* body")
    check_media_type(content_type)
    return await read_capped(request, limit), raw


MAX_NUMBER_CHARS = 32
MAX_COORD = 1e5  # box coordinates (pixels) beyond any accepted image
MIN_BOX_SIDE = 1.0  # pixels: a narrower box holds nothing to crop (and 5e-324 makes a crop of size 0: NaN)


def option_bounds(name: str, settings: Settings) -> tuple[type, float, float]:
    """Type and bounds of a pose option, the same for POST /pose and WS /ws/pose controls."""
    return {"det_conf": (float, 0.0, 1.0), "kpt_thr": (float, 0.0, 1.0),
            "max_persons": (int, 1, settings.max_persons)}[name]


def parse_option(name: str, value: Any, settings: Settings) -> float | int:
    """A pose option from a query/form string or a JSON value: finite, within bounds, an integer where one is due."""
    kind, lo, hi = option_bounds(name, settings)
    if isinstance(value, str):
        if len(value) > MAX_NUMBER_CHARS:
            raise BadParameter(f"{name} must be a number of at most {MAX_NUMBER_CHARS} characters")
        try:
            number = float(value)
        except ValueError:
            raise BadParameter(f"{name} must be a number") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            raise BadParameter(f"{name} is out of range") from None
    else:
        raise BadParameter(f"{name} must be a number")
    if not math.isfinite(number) or not lo <= number <= hi:
        raise BadParameter(f"{name} must be within [{lo:g}, {hi:g}]")
    if kind is int and number != int(number):
        raise BadParameter(f"{name} must be a whole number")
    return kind(number)


def _option(raw: dict[str, str], name: str, default: float | int, settings: Settings) -> float | int:
    return default if raw.get(name) is None else parse_option(name, raw[name], settings)  # "" is no number


def parse_boxes(text: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """JSON [[x1,y1,x2,y2(,score)], ...] -> boxes (N, 4) and scores (N,) (1.0 where not given)."""
    try:
        value: Any = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:  # ValueError: integers of > 4300 digits
        raise BadBoxes(f"boxes is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(value, list):
        raise BadBoxes("boxes must be a JSON list of [x1, y1, x2, y2] or [x1, y1, x2, y2, score]")
    if len(value) > limit:
        raise BadBoxes(f"{len(value)} boxes exceed the limit of {limit}")
    boxes, scores = [], []
    for i, box in enumerate(value):
        ok = isinstance(box, list) and len(box) in (4, 5) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and abs(v) <= MAX_COORD
            for v in box)
        if not ok:
            raise BadBoxes(f"box {i} must be [x1, y1, x2, y2] or [x1, y1, x2, y2, score] of numbers within "
                           f"+-{MAX_COORD:g}")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise BadBoxes(f"box {i} must have x2 > x1 and y2 > y1, got {box[:4]}")
        if box[2] - box[0] < MIN_BOX_SIDE or box[3] - box[1] < MIN_BOX_SIDE:
            raise BadBoxes(f"box {i} must be at least {MIN_BOX_SIDE:g} pixel wide and high, got {box[:4]}")
        boxes.append([float(v) for v in box[:4]])
        scores.append(float(box[4]) if len(box) == 5 else 1.0)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64)


def parse_params(raw: dict[str, str], settings: Settings) -> PoseParams:
    """Validated PoseParams from raw strings; request limits never exceed the service settings."""
    params = PoseParams(det_conf=_option(raw, "det_conf", settings.detector_conf, settings),
                        kpt_thr=_option(raw, "kpt_thr", settings.kpt_score_threshold, settings),
                        max_persons=int(_option(raw, "max_persons", settings.max_persons, settings)),
                        pose_source=settings.pose_source, pose_source_given=raw.get("pose_source") is not None)
    if params.pose_source_given:
        params.pose_source = parse_source(raw["pose_source"])
    if raw.get("boxes"):
        params.boxes, params.box_scores = parse_boxes(raw["boxes"], settings.max_persons)
        params.max_persons = settings.max_persons
    params.source()  # `detector` asked with client boxes: 422 here
    image_id = raw.get("image_id")
    if image_id not in (None, "") and not (image_id.isascii() and image_id.isdigit() and len(image_id) <= 16
                                           and int(image_id) <= 2**53):  # "²".isdigit(), but int("²") fails
        raise BadParameter("image_id must be a whole number in [0, 2^53]")
    fmt = raw.get("format", "json")
    if fmt not in ("json", "coco"):
        raise BadParameter("format must be 'json' or 'coco'")
    return params
