"""HTTP statuses of the gateway's errors: the gRPC API's reason codes, carried over HTTP.

A :class:`~visearch.shared.errors.VisearchError` (raised in process, or restored from a gRPC status by
:func:`~visearch.shared.grpcutil.error_from_rpc`) keeps its ``reason``; its class and reason choose the HTTP
status. The body is the JSON form of a ``google.rpc.Status`` as Google's HTTP APIs write it (AIP-193):
``{"error": {"code": <http status>, "status": "<gRPC code name>", "message": ..., "reason": ...,
"details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": ..., "domain": "visearch"}]}}``.
"""

from __future__ import annotations

from typing import Any, cast

import grpc

from visearch.shared import errors
from visearch.shared.grpcutil import ERROR_DOMAIN, error_from_rpc

# Reasons whose status differs from their class's (the payload is too large, in bytes or in pixels).
_STATUS_BY_REASON = {"image_too_large": 413, "decompression_bomb": 413, "request_too_large": 413}
# The rest by class: the client's input (400, 415 for bytes that are no image, 422 for a URL that could not be
# used), a missing item (404), and the server's own state or its dependencies (503: retry later).
_STATUS_BY_CLASS: dict[type[errors.VisearchError], int] = {
    errors.InvalidImageError: 415,
    errors.InvalidEventError: 400,
    errors.ImageFetchError: 422,
    errors.NotFoundError: 404,
    errors.DependencyUnavailableError: 503,
    errors.ModelNotBuiltError: 503,
    errors.SchemaMismatchError: 503,
    errors.ConfigError: 503,
}
# gRPC codes that no VisearchError carries: the security interceptor's refusals, and deadlines.
_STATUS_BY_CODE = {
    grpc.StatusCode.UNAUTHENTICATED: (401, "invalid_token"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_denied"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limited"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "deadline_exceeded"),
}


class HttpError(Exception):
    """An error answered over HTTP: ``status`` (HTTP), ``code`` (the gRPC code name), ``reason`` (the
    project's reason code), a message safe to show the caller, and extra response ``headers``."""

    def __init__(
        self, status: int, code: str, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.reason, self.message = status, code, reason, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body (see the module's docstring)."""
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": self.reason, "domain": ERROR_DOMAIN}
        return {
            "error": {
                "code": self.status,
                "status": self.code,
                "message": self.message,
                "reason": self.reason,
                "details": [info],
            }
        }


def from_visearch(exc: errors.VisearchError) -> HttpError:
    """The HTTP error of a VisearchError: status from its reason, else its class (500 for an unknown class)."""
    status = _STATUS_BY_REASON.get(exc.reason) or next(
        (s for cls, s in _STATUS_BY_CLASS.items() if isinstance(exc, cls)), 500
    )
    return HttpError(status, exc.code.name, exc.reason, str(exc))


def from_rpc(exc: grpc.RpcError, target: str) -> HttpError:
    """The HTTP error of a failed gRPC call to ``target``: the refusals of the security interceptor (401, 429 with
    ``Retry-After``) and deadlines (504) by code, everything else through :func:`from_visearch`."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    if code in _STATUS_BY_CODE:
        status, reason = _STATUS_BY_CODE[code]
        details = exc.details() if hasattr(exc, "details") else ""
        headers = {}
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            trailers = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
            # grpc returns (key, value) tuples; its stubs type them as a class of their own
            retry_ms = next((str(v) for k, v in cast(Any, trailers) or () if k == "retry-after-ms"), "1000")
            headers["Retry-After"] = str(max(1, -(-int(retry_ms) // 1000)))
        return HttpError(status, code.name, reason, f"{target}: {details}", headers)
    return from_visearch(error_from_rpc(exc, target))


def bad_request(message: str, reason: str = "invalid_request") -> HttpError:
    """A 400 for a request the gateway refuses itself (malformed JSON, a field of the wrong type...)."""
    return HttpError(400, grpc.StatusCode.INVALID_ARGUMENT.name, reason, message)
