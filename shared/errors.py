"""Error types shared by every service.

Each error carries a short machine-readable ``reason`` (a label value for metrics and the DLQ header
``visearch-dlq-reason``) and the gRPC status code a server returns for it. ``permanent`` errors cannot
be fixed by retrying (bad input): a worker sends the event to the DLQ. Others are transient: retry.
"""

from __future__ import annotations

import grpc


class VisearchError(Exception):
    """Base class. ``reason``: snake_case slug; ``code``: grpc.StatusCode; ``permanent``: retrying cannot help."""

    reason = "internal"
    code = grpc.StatusCode.INTERNAL
    permanent = False

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class InvalidImageError(VisearchError):
    """The bytes are not a decodable image, or break a limit (size, pixels). Reasons: ``empty_image``,
    ``image_too_large``, ``decompression_bomb``, ``undecodable_image``, ``truncated_image``."""

    reason = "undecodable_image"
    code = grpc.StatusCode.INVALID_ARGUMENT
    permanent = True


class InvalidEventError(VisearchError):
    """An event or request is malformed (missing id, no image, unknown kind, bad payload)."""

    reason = "invalid_event"
    code = grpc.StatusCode.INVALID_ARGUMENT
    permanent = True


class ImageFetchError(VisearchError):
    """An image URI could not be read (missing file, scheme not allowed, HTTP error)."""

    reason = "image_fetch_failed"
    code = grpc.StatusCode.FAILED_PRECONDITION
    permanent = True


class NotFoundError(VisearchError):
    """A referenced item (e.g. the image id of a "more like this" query) is not indexed."""

    reason = "not_found"
    code = grpc.StatusCode.NOT_FOUND
    permanent = True


class ModelNotBuiltError(VisearchError):
    """A model's ONNX files are missing from the cache: run ``visearch models build``."""

    reason = "model_not_built"
    code = grpc.StatusCode.FAILED_PRECONDITION
    permanent = False


class DependencyUnavailableError(VisearchError):
    """A dependency (Milvus, Triton, Kafka) did not answer; retry with backoff."""

    reason = "dependency_unavailable"
    code = grpc.StatusCode.UNAVAILABLE
    permanent = False


class SchemaMismatchError(VisearchError):
    """An existing collection was created by an older schema: reindex into a new prefix (see docs/operations.md)."""

    reason = "schema_mismatch"
    code = grpc.StatusCode.FAILED_PRECONDITION
    permanent = True


class ConfigError(VisearchError):
    """The process's settings cannot work (a required address or option is missing); fix them and restart."""

    reason = "bad_config"
    code = grpc.StatusCode.FAILED_PRECONDITION
    permanent = True
