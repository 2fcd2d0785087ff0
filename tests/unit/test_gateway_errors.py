"""HTTP statuses of the gateway's errors: the gRPC API's reason codes over HTTP (services/gateway/errors.py)."""

from __future__ import annotations

import grpc
import pytest

from visearch.services.gateway.errors import from_rpc, from_visearch
from visearch.shared import errors


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details="", trailers=()):
        self._code, self._details, self._trailers = code, details, trailers

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidImageError("x", reason="undecodable_image"), 415),
        (errors.InvalidImageError("x", reason="image_too_large"), 413),
        (errors.InvalidImageError("x", reason="decompression_bomb"), 413),
        (errors.InvalidEventError("x", reason="bad_top_k"), 400),
        (errors.ImageFetchError("x", reason="address_not_allowed"), 422),
        (errors.NotFoundError("x"), 404),
        (errors.DependencyUnavailableError("x"), 503),
        (errors.ModelNotBuiltError("x"), 503),
    ],
)
def test_status_by_reason_then_class(error, status):
    http = from_visearch(error)
    assert (http.status, http.reason) == (status, error.reason)
    assert http.body()["error"]["details"][0] == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": error.reason,
        "domain": "visearch",
    }


def test_security_refusals_and_deadlines_from_grpc():
    limited = from_rpc(
        FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", (("retry-after-ms", "2500"),)), "Search"
    )
    assert (limited.status, limited.reason, limited.headers) == (429, "rate_limited", {"Retry-After": "3"})
    assert from_rpc(FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "no"), "Search").status == 401
    assert from_rpc(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "late"), "Search").status == 504
    unknown = from_rpc(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down"), "Search")
    assert (unknown.status, unknown.reason) == (503, "dependency_unavailable")
