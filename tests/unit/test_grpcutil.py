"""Unit tests for visearch.shared.grpcutil: error -> status mapping, in-process stubs, client error mapping."""

from __future__ import annotations

import grpc
import pytest
from prometheus_client import REGISTRY

from visearch.shared import errors
from visearch.shared.grpcutil import InProcessStub, error_from_rpc, error_status, rpc_method


class Aborted(Exception):
    """What FakeContext.abort raises (a real grpc context also raises from abort)."""


class FakeContext:
    """Records the (code, message) given to abort or abort_with_status, then raises like grpc.ServicerContext."""

    def __init__(self) -> None:
        self.calls: list[tuple[grpc.StatusCode, str]] = []
        self.statuses: list[grpc.Status] = []

    def abort(self, code, message):
        self.calls.append((code, message))
        raise Aborted(message)

    def abort_with_status(self, status):
        self.statuses.append(status)
        self.calls.append((status.code, status.details))
        raise Aborted(status.details)


class Servicer:
    """A servicer whose Echo raises whatever the request says."""

    def __init__(self) -> None:
        self.contexts: list[object] = []

    @rpc_method("TestService")
    def Echo(self, request, context):  # noqa: N802 (gRPC method name)
        self.contexts.append(context)
        if isinstance(request, BaseException):
            raise request
        return f"echo:{request}"


class FakeRpcError(grpc.RpcError):
    """A client-side failure with a status code and details, like grpc's _InactiveRpcError."""

    def __init__(self, code: grpc.StatusCode, details: str = "boom") -> None:
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


def test_success_returns_the_result_with_or_without_context():
    """A method that succeeds returns its value; abort is never called."""
    ctx = FakeContext()
    assert Servicer().Echo("hi", ctx) == "echo:hi"
    assert Servicer().Echo("hi") == "echo:hi"
    assert ctx.calls == []


def test_wrapper_keeps_the_method_name():
    """functools.wraps keeps the servicer method's name (gRPC looks methods up by name)."""
    assert Servicer.Echo.__name__ == "Echo"


@pytest.mark.parametrize("error", [errors.InvalidImageError("bad"), errors.NotFoundError("gone"), KeyError("k")])
def test_context_none_reraises(error):
    """With context=None (in-process call) the original exception propagates unchanged."""
    with pytest.raises(type(error)) as info:
        Servicer().Echo(error, None)
    assert info.value is error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidImageError("not an image", reason="undecodable_image"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InvalidEventError("no id"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFoundError("image x is not indexed"), grpc.StatusCode.NOT_FOUND),
        (errors.ImageFetchError("no such file"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.ModelNotBuiltError("run visearch models build"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.DependencyUnavailableError("milvus down"), grpc.StatusCode.UNAVAILABLE),
        (errors.VisearchError("generic"), grpc.StatusCode.INTERNAL),
    ],
)
def test_visearch_error_aborts_with_its_code_and_message(error, code):
    """A VisearchError aborts the call with the error's own status code and its message."""
    ctx = FakeContext()
    with pytest.raises(Aborted):
        Servicer().Echo(error, ctx)
    assert ctx.calls == [(code, str(error))]


def test_unexpected_exception_aborts_internal_without_leaking_details():
    """Any other exception aborts with INTERNAL and a message naming only the exception type."""
    ctx = FakeContext()
    with pytest.raises(Aborted):
        Servicer().Echo(ZeroDivisionError("secret path /etc/x"), ctx)
    assert ctx.calls == [(grpc.StatusCode.INTERNAL, "internal error: ZeroDivisionError")]


def test_handling_time_is_recorded_with_the_status_code():
    """Each call observes the latency histogram labelled with service, method and final code."""
    labels = {"grpc_service": "TestService", "grpc_method": "Echo", "grpc_code": "NOT_FOUND"}
    before = REGISTRY.get_sample_value("visearch_grpc_server_handling_seconds_count", labels) or 0.0
    with pytest.raises(Aborted):
        Servicer().Echo(errors.NotFoundError("x"), FakeContext())
    with pytest.raises(errors.NotFoundError):
        Servicer().Echo(errors.NotFoundError("x"), None)
    assert REGISTRY.get_sample_value("visearch_grpc_server_handling_seconds_count", labels) == before + 2


def test_in_process_stub_calls_servicer_with_context_none():
    """stub.Method(request, timeout=..., metadata=...) calls servicer.Method(request, None) and returns its value."""
    servicer = Servicer()
    stub = InProcessStub(servicer)
    assert stub.Echo("x", timeout=1.5, metadata=[("k", "v")]) == "echo:x"
    assert stub.Echo("y") == "echo:y"
    assert servicer.contexts == [None, None]


def test_in_process_stub_propagates_errors_and_unknown_methods():
    """Errors reach the caller as VisearchError (not gRPC statuses); unknown methods raise AttributeError."""
    stub = InProcessStub(Servicer())
    with pytest.raises(errors.NotFoundError):
        stub.Echo(errors.NotFoundError("gone"))
    with pytest.raises(AttributeError):
        stub.Missing("x")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.UNAVAILABLE, errors.DependencyUnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DependencyUnavailableError),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidImageError),
        (grpc.StatusCode.NOT_FOUND, errors.NotFoundError),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.ImageFetchError),
        (grpc.StatusCode.PERMISSION_DENIED, errors.DependencyUnavailableError),
    ],
)
def test_error_from_rpc_maps_status_codes(code, cls):
    """A failed client call becomes the matching VisearchError; codes without a mapping become UNAVAILABLE."""
    err = error_from_rpc(FakeRpcError(code, "details here"), "embedding:50051")
    assert type(err) is cls
    assert str(err) == f"embedding:50051: {code.name}: details here"


def test_error_from_rpc_without_code_is_dependency_unavailable():
    """An RpcError that carries no status (e.g. a bare grpc.RpcError) maps to DependencyUnavailableError."""
    err = error_from_rpc(grpc.RpcError("channel closed"), "ranking")
    assert isinstance(err, errors.DependencyUnavailableError)
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert str(err).startswith("ranking: UNKNOWN: ")


@pytest.mark.parametrize(
    "error",
    [
        errors.InvalidEventError("precomputed: 2 for 1 image", reason="bad_precomputed"),
        errors.InvalidImageError("too many pixels", reason="decompression_bomb"),
        errors.ModelNotBuiltError("run visearch models build"),
        errors.SchemaMismatchError("collection lacks fields"),
        errors.DependencyUnavailableError("milvus down"),
    ],
)
def test_a_servers_error_reaches_the_caller_exactly(error):
    """Over a real gRPC server on 127.0.0.1, the caller restores the server's error class and reason (ErrorInfo in
    the status details), not the class its status code alone would suggest."""
    from concurrent import futures

    servicer = Servicer()

    def echo(request: bytes, context):
        return servicer.Echo(error, context)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Test", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary("/test.Test/Echo")(b"", timeout=10)
    finally:
        server.stop(None)
    restored = error_from_rpc(info.value, "peer")
    assert type(restored) is type(error) and restored.reason == error.reason and restored.code == error.code
    assert str(restored) == f"peer: {error.code.name}: {error}"


def test_error_status_carries_code_message_and_reason():
    status = error_status(errors.InvalidEventError("bad", reason="bad_precomputed"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT and status.details == "bad"
    assert any(key == "grpc-status-details-bin" for key, _ in status.trailing_metadata)
