"""Typed service errors: each knows its HTTP status and its `error.type`. The one error body every edge sends
(HTTP answers of the server and the cluster gateway, stream error messages) and the WebSocket close codes."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


def error_body(type_: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """{"error": {"type", "message"(, "request_id")}}: the shape of every error, HTTP or stream."""
    error = {"type": type_, "message": message}
    if request_id is not None:
        error["request_id"] = request_id
    return {"error": error}


class WsClose(IntEnum):
    """Close codes of WS /ws/pose (RFC 6455 7.4.1), the same from a server and through the gateway."""

    POLICY = 1008  # the API key or the origin is refused (before accept: the handshake gets 403)
    TOO_BIG = 1009  # a frame over ws_max_frame_bytes
    RESTART = 1012  # the stream's replica stopped (gateway): reconnect
    TRY_AGAIN = 1013  # models loading, too many streams, no replica up


class ServiceError(Exception):
    """Base: a client-visible error rendered as `error_body(type, message, request_id)`."""

    status: int = 400
    type: str = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmptyBody(ServiceError):
    type = "empty_body"


class NotAnImage(ServiceError):
    type = "not_an_image"


class CorruptImage(ServiceError):
    type = "corrupt_image"


class TruncatedImage(ServiceError):
    type = "truncated_image"


class UnprocessableImage(ServiceError):
    """A valid image the pipeline cannot use: an aspect ratio no detector input holds, degenerate geometry."""

    status = 422
    type = "unprocessable_image"


class TooManyBytes(ServiceError):
    status = 413
    type = "too_many_bytes"
    headers = {"Connection": "close"}  # do not read the rest of an oversized body


class TooManyPixels(ServiceError):
    status = 413
    type = "too_many_pixels"


class UnsupportedMediaType(ServiceError):
    status = 415
    type = "unsupported_media_type"


class BadMultipart(ServiceError):
    type = "bad_multipart"


class BadParameter(ServiceError):
    status = 422
    type = "bad_parameter"


class BadBoxes(ServiceError):
    status = 422
    type = "bad_boxes"


class QueueFull(ServiceError):
    status = 503
    type = "queue_full"
    headers = {"Retry-After": "1"}


class NotReady(ServiceError):
    status = 503
    type = "not_ready"
    headers = {"Retry-After": "5"}


class BadPath(ServiceError):
    status = 400
    type = "bad_path"


class BadDataset(ServiceError):
    status = 400
    type = "bad_dataset"


class NotFound(ServiceError):
    status = 404
    type = "not_found"


class Conflict(ServiceError):
    status = 409
    type = "conflict"


class ReplicaUnavailable(ServiceError):
    """Cluster: the replica serving a request died (or none is up) and retries ran out."""

    status = 503
    type = "replica_unavailable"
    headers = {"Retry-After": "2"}
