"""Unit tests for visearch.shared.grpcutil: error -> status mapping, in-process stubs, client error mapping,
client channel options (load balancing, keepalive, TLS names), server options and service roles."""

from __future__ import annotations

import json

import grpc
import pytest
from prometheus_client import REGISTRY

from visearch.shared import errors, grpcutil
from visearch.shared.config import SecuritySettings, ServiceSettings
from visearch.shared.grpcutil import (
    InProcessStub,
    channel_options,
    client_channel,
    error_from_rpc,
    error_status,
    rpc_method,
    run_service,
    server_options,
    target_hosts,
)


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


# --------------------------------------------------------------------------------------------- load balancing


@pytest.mark.parametrize(
    ("target", "hosts"),
    [
        ("127.0.0.1:50052", ["127.0.0.1"]),
        ("localhost:50052", ["localhost"]),  # "localhost" is a host, not a resolver scheme
        ("embedding", ["embedding"]),
        ("[::1]:50052", ["::1"]),
        ("dns:///visearch-embedding-headless:50052", ["visearch-embedding-headless"]),
        ("dns://10.0.0.10:53/visearch-embedding-headless:50052", ["visearch-embedding-headless"]),
        ("dns:visearch-embedding:50052", ["visearch-embedding"]),
        ("ipv4:127.0.0.1:1,127.0.0.2:2", ["127.0.0.1", "127.0.0.2"]),
        ("ipv6:[::1]:1,[::1]:2", ["::1", "::1"]),
        ("unix:/run/visearch.sock", ["localhost"]),
    ],
)
def test_target_hosts(target, hosts):
    """The hosts a target names (plaintext-token warning, TLS name checks), whatever its resolver scheme."""
    assert target_hosts(target) == hosts


def _options(target, security=None, **service):
    return dict(channel_options(target, security or SecuritySettings(), ServiceSettings(**service)))


def test_channel_options_balance_with_round_robin_by_default():
    """The service config asks for round_robin (DNS TXT service configs are ignored), DNS is re-resolved at most
    every 5 s, keepalive pings every 30 s (idle connections too), message limits as configured."""
    options = _options("dns:///visearch-embedding-headless:50052")
    assert json.loads(options["grpc.service_config"]) == {"loadBalancingConfig": [{"round_robin": {}}]}
    assert options["grpc.service_config_disable_resolution"] == 1
    assert options["grpc.dns_min_time_between_resolutions_ms"] == 5000
    assert options["grpc.keepalive_time_ms"] == 30000 and options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.max_receive_message_length"] == options["grpc.max_send_message_length"] == 32 * 1024 * 1024
    assert "grpc.default_authority" not in options and "grpc.ssl_target_name_override" not in options


def test_channel_options_policy_keepalive_and_reresolution_follow_settings():
    options = _options("embedding:50052", grpc_lb_policy="pick_first", grpc_keepalive_s=0, grpc_dns_min_reresolve_s=1)
    assert json.loads(options["grpc.service_config"]) == {"loadBalancingConfig": [{"pick_first": {}}]}
    assert "grpc.keepalive_time_ms" not in options and options["grpc.dns_min_time_between_resolutions_ms"] == 1000
    forced = dict(channel_options("embedding:50052", SecuritySettings(), ServiceSettings(), lb_policy="pick_first"))
    assert json.loads(forced["grpc.service_config"])["loadBalancingConfig"] == [{"pick_first": {}}]


def test_keepalive_faster_than_servers_accept_is_refused():
    """Servers answer pings more often than every 5 s with GOAWAY: a shorter client interval is a config error."""
    with pytest.raises(ValueError, match="grpc_keepalive_s"):
        ServiceSettings(grpc_keepalive_s=1)


def test_static_list_on_one_host_gets_a_checkable_authority():
    """gRPC's default authority of an ipv4: list is the whole list, which no certificate names: the first address
    is used instead when every address is on one host; a list over several hosts under TLS needs a server name."""
    assert _options("ipv4:127.0.0.1:1,127.0.0.1:2")["grpc.default_authority"] == "127.0.0.1:1"
    assert "grpc.default_authority" not in _options("ipv4:127.0.0.1:1")
    assert "grpc.default_authority" not in _options("ipv4:10.0.0.1:1,10.0.0.2:1")  # plaintext: no name to check
    tls = SecuritySettings(client_tls=True)
    with pytest.raises(errors.ConfigError, match="TLS_SERVER_NAME"):
        _options("ipv4:10.0.0.1:1,10.0.0.2:1", tls)
    named = _options("ipv4:10.0.0.1:1,10.0.0.2:1", SecuritySettings(client_tls=True, tls_server_name="embedding"))
    assert named["grpc.ssl_target_name_override"] == "embedding"


def test_server_options_close_connections_at_max_age_and_accept_keepalive():
    """Servers close connections after max connection age (clients then re-resolve and rebalance) and accept the
    clients' keepalive pings; age 0 keeps connections open."""
    options = dict(server_options(ServiceSettings()))
    assert options["grpc.max_connection_age_ms"] == 300_000 and options["grpc.max_connection_age_grace_ms"] == 30_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.min_recv_ping_interval_without_data_ms"] == 5000
    assert "grpc.max_connection_age_ms" not in dict(server_options(ServiceSettings(grpc_max_connection_age_s=0)))


def test_client_channel_accepts_resolver_schemes():
    """client_channel opens channels to targets with a resolver scheme (nothing connects until a call)."""
    for target in ("dns:///localhost:1", "ipv4:127.0.0.1:1,127.0.0.1:2", "localhost:1"):
        with client_channel(target) as channel:
            assert channel is not None


# --------------------------------------------------------------------------------------------- service roles


class _Stage:
    name = "embedding"


class _RecordingServer:
    """Stands for a grpc.Server in run_service's register callback."""


@pytest.fixture
def served(monkeypatch):
    """run_service with serve() and the Kafka worker factory replaced: records what would run."""
    import visearch.shared.pipeline as pipeline

    calls: dict = {}

    def fake_serve(service_name, register, settings, workers=(), **kwargs):
        calls["names"] = register(_RecordingServer())
        calls["workers"] = workers
        return 0

    monkeypatch.setattr(grpcutil, "serve", fake_serve)
    monkeypatch.setattr(pipeline, "kafka_workers", lambda stage: (lambda stop: None,))
    return calls


@pytest.mark.parametrize(("role", "names", "workers"), [("all", 1, 1), ("grpc", 1, 0), ("worker", 0, 1)])
def test_service_role_selects_api_and_worker(served, role, names, workers):
    """all: the API and the stage worker; grpc: the API only; worker: the worker only (health-only server)."""
    added = []
    settings = ServiceSettings(service_role=role, metrics_port=0)
    rc = run_service("embedding", settings, object(), lambda s, server: added.append(s), "x.Svc", _Stage())
    assert rc == 0
    assert len(served["names"]) == names == len(added) and len(served["workers"]) == workers


def test_worker_role_without_a_worker_is_a_config_error(monkeypatch):
    """VISEARCH_SERVICE_ROLE=worker where no stage worker would run (no Kafka, or no stage) fails at start."""
    import visearch.shared.pipeline as pipeline

    monkeypatch.setattr(pipeline, "kafka_workers", lambda stage: ())
    settings = ServiceSettings(service_role="worker", metrics_port=0)
    with pytest.raises(errors.ConfigError, match="no stage worker"):
        run_service("embedding", settings, object(), lambda s, server: None, "x.Svc", _Stage())
    with pytest.raises(errors.ConfigError, match="no stage worker"):
        run_service("ranking", settings, object(), lambda s, server: None, "x.Svc", None)
