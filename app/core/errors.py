"""Typed service errors: each knows its HTTP status and its `error.type`; the server renders them as JSON."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: a client-visible error rendered as {"error": {"type": ..., "message": ...}}."""

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
