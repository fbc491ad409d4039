"""What every HTTP edge shares, the single server and the cluster gateway alike: request ids, the error answer
and the size-capped body reader (nothing past the limit is read)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

from fastapi.responses import JSONResponse
from starlette.requests import Request

from app.core.errors import ServiceError, TooManyBytes, error_body

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id(given: str | None) -> str:
    """The client's X-Request-ID when it is short and plain, else a new one."""
    return given if given and REQUEST_ID.match(given) else uuid.uuid4().hex[:16]


def error_response(status: int, type_: str, message: str, rid: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The error answer: `error_body` with the request id, which the X-Request-ID header repeats."""
    return JSONResponse(error_body(type_, message, rid), status_code=status,
                        headers={**(headers or {}), "X-Request-ID": rid})


def service_error_response(exc: ServiceError, rid: str) -> JSONResponse:
    return error_response(exc.status, exc.type, exc.message, rid, exc.headers)


def refuse_declared(request: Request, limit: int) -> None:
    """413 at once when the declared Content-Length passes `limit` (the body is not read)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooManyBytes(f"request of {declared} bytes exceeds the limit of {limit} bytes")


async def capped_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it streams in, cut off with 413 once it passes `limit` (chunked uploads included)."""
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooManyBytes(f"request body exceeds the limit of {limit} bytes")
        yield chunk


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) beyond `limit` bytes, declared or streamed, without reading the rest."""
    refuse_declared(request, limit)
    return b"".join([chunk async for chunk in capped_stream(request, limit)])
