"""Unit tests for visearch.shared.security (tokens, auth decisions, token buckets, the interceptor on a real
loopback server, client defaults) and the log redaction processor of visearch.shared.logging."""

from __future__ import annotations

import io
import json
import threading
from concurrent import futures

import grpc
import pytest
import structlog
from pydantic import ValidationError

from visearch.shared import logging as vlog
from visearch.shared.config import SecuritySettings
from visearch.shared.grpcutil import client_channel
from visearch.shared.security import (
    RateLimiter,
    SecurityInterceptor,
    TokenBucket,
    TokenSet,
    authenticate,
    bearer_token,
    client_identity,
    is_loopback,
    parse_tokens,
    peer_host,
    service_of,
    token_id,
)
from visearch.v1 import common_pb2

A = "alpha-0123456789abcdef"
B = "bravo-fedcba9876543210"


class Clock:
    """A settable monotonic clock."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("VISEARCH_"):
            monkeypatch.delenv(name)


# --------------------------------------------------------------------------------------------- tokens


def test_parse_tokens_ids_and_derived_ids():
    """`id:token` entries keep their id; bare tokens are named token-<sha256 prefix>; newlines and comments work."""
    tokens = parse_tokens(f"shop:{A}, {B}\n# a comment\n\n")
    assert tokens == {"shop": A, token_id(B): B}
    assert token_id(B).startswith("token-") and len(token_id(B)) == 14


@pytest.mark.parametrize("text", ["shop:short", f"a:{A},a:{B}", f":{A}", "x:has a space in it 12345"])
def test_parse_tokens_refuses_bad_entries_without_echoing_them(text):
    """Short tokens, duplicate ids, empty ids and whitespace are refused; the message never holds the token."""
    with pytest.raises(ValueError) as info:
        parse_tokens(text)
    for secret in ("short", A, B, "has a space"):
        assert secret not in str(info.value)


def test_settings_validation_hides_tokens(monkeypatch):
    """A bad security setting fails at start-up without printing the tokens."""
    monkeypatch.setenv("VISEARCH_SECURITY_AUTH_TOKENS", f"a:{A},b:tooshort")
    with pytest.raises(ValidationError) as info:
        SecuritySettings()
    assert "tooshort" not in str(info.value) and A not in str(info.value)
    monkeypatch.setenv("VISEARCH_SECURITY_AUTH_TOKENS", f"a:{A}")
    monkeypatch.setenv("VISEARCH_SECURITY_TLS_CERT_FILE", "/x.pem")
    with pytest.raises(ValidationError) as info:
        SecuritySettings()
    assert "tls_key_file" in str(info.value) and A not in str(info.value)
    assert A not in repr(SecuritySettings(tls_key_file="/x.key"))


@pytest.mark.parametrize(
    ("pairs", "field"),
    [
        ({"tls_client_ca_file": "/ca.pem"}, "tls_client_ca_file"),
        ({"tls_client_cert_file": "/c.pem"}, "tls_client_key_file"),
    ],
)
def test_settings_refuse_incomplete_tls(pairs, field):
    """Mutual TLS without a server certificate, or a client certificate without its key, is refused."""
    with pytest.raises(ValidationError, match=field):
        SecuritySettings(**pairs)


def test_bearer_token_parsing():
    """The bearer scheme is case-insensitive; bytes values work; other schemes and empty tokens give None."""
    assert bearer_token([("x-other", "1"), ("authorization", f"Bearer {A}")]) == A
    assert bearer_token([("authorization", f"bearer   {A} ")]) == A
    assert bearer_token([("Authorization", f"BEARER {A}".encode())]) == A
    assert bearer_token([("authorization", f"Basic {A}")]) is None
    assert bearer_token([("authorization", "Bearer ")]) is None
    assert bearer_token([]) is None and bearer_token(None) is None


def test_authenticate_decisions():
    """Right token -> its id; none -> missing_token; another -> invalid_token; messages never hold tokens."""
    tokens = TokenSet(f"shop:{A},ops:{B}")
    assert authenticate([("authorization", f"Bearer {B}")], tokens).client_id == "ops"
    missing = authenticate([], tokens)
    assert not missing.ok and missing.reason == "missing_token" and "Bearer" in missing.message
    wrong = authenticate([("authorization", f"Bearer {A}x")], tokens)
    assert not wrong.ok and wrong.reason == "invalid_token" and A not in wrong.message
    assert authenticate([("authorization", f"Bearer {A[:-1]}")], tokens).reason == "invalid_token"


def test_tokens_match_is_constant_time_over_all_tokens(monkeypatch):
    """Every configured token is compared with secrets.compare_digest, also after a match."""
    import visearch.shared.security as security

    calls = []
    real = security.secrets.compare_digest
    monkeypatch.setattr(security.secrets, "compare_digest", lambda a, b: calls.append(b) or real(a, b))
    tokens = TokenSet(f"shop:{A},ops:{B},x:{'c' * 20}")
    assert tokens.match(A) == "shop"
    assert len(calls) == 3


def test_tokens_file_rotation(tmp_path):
    """Tokens from a file are re-read when it changes (checked at most once a second); a broken file keeps the old ones."""
    path = tmp_path / "tokens"
    path.write_text(f"old:{A}\n")
    clock = Clock()
    tokens = TokenSet(f"inline:{'i' * 16}", path, clock=clock)
    assert tokens.match(A) == "old" and tokens.match("i" * 16) == "inline"
    path.write_text(f"new:{B}\n")
    import os

    os.utime(path, ns=(1, 10**18))
    assert tokens.match(B) is None  # not looked at again yet
    clock.now += 1.5
    assert tokens.match(B) == "new" and tokens.match(A) is None
    path.write_text("broken:short\n")
    os.utime(path, ns=(1, 2 * 10**18))
    clock.now += 1.5
    assert tokens.match(B) == "new"  # kept


def test_token_file_must_be_readable_at_start(tmp_path):
    """A missing tokens file at start-up is an error, not 'no auth'."""
    with pytest.raises(OSError):
        TokenSet("", tmp_path / "missing")


# --------------------------------------------------------------------------------------------- rate limits


def test_token_bucket_burst_then_refill():
    """A full bucket allows `burst` requests at once, then refuses with the wait until the next token;
    it refills at `rate` per second, never above `burst`."""
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.25) == pytest.approx(0.25)  # half a token refilled
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert [bucket.take(100.0) for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # capped at burst
    assert bucket.take(100.0) > 0


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0)])
def test_token_bucket_refuses_bad_parameters(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)


def test_rate_limiter_is_per_client_and_bounded():
    """Each key has its own bucket; at most max_clients keys are kept (least recently seen dropped)."""
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, max_clients=3, clock=clock)
    assert [limiter.check("a") for _ in range(3)][:2] == [0.0, 0.0] and limiter.check("a") > 0
    assert limiter.check("b") == 0.0
    for key in ("c", "d"):
        limiter.check(key)
    assert len(limiter) == 3  # "a" was least recently seen and is forgotten: it starts full again
    assert limiter.check("a") == 0.0
    clock.now += 1.0
    assert limiter.check("b") == 0.0


def test_rate_limiter_is_thread_safe():
    """Many threads taking at the same instant get exactly `burst` grants."""
    limiter = RateLimiter(rate=0.001, burst=50, clock=Clock())
    grants = []
    lock = threading.Lock()

    def worker():
        for _ in range(25):
            ok = limiter.check("k") == 0.0
            with lock:
                grants.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(grants) == 50 and len(grants) == 200


def test_from_settings():
    """No tokens and no rate: no interceptor; a rate of 0 means no limiter."""
    assert SecurityInterceptor.from_settings(SecuritySettings()) is None
    assert RateLimiter.from_settings(SecuritySettings(rate_limit_per_s=0)) is None
    limiter = RateLimiter.from_settings(SecuritySettings(rate_limit_per_s=5, rate_limit_burst=7))
    assert (limiter.rate, limiter.burst) == (5, 7)


@pytest.mark.parametrize(
    ("peer", "host"), [("ipv4:10.1.2.3:5555", "10.1.2.3"), ("ipv6:[::1]:5555", "::1"), ("unix:/tmp/s", "unix:/tmp/s")]
)
def test_peer_host_drops_the_port(peer, host):
    assert peer_host(peer) == host


class _Context:
    def __init__(self, auth: dict, peer: str = "ipv4:10.0.0.9:4242") -> None:
        self._auth, self._peer = auth, peer

    def auth_context(self):
        return self._auth

    def peer(self):
        return self._peer


def test_client_identity_prefers_token_then_certificate_then_ip():
    """Rate-limit key: the token id, else a verified client certificate's common name, else the peer IP."""
    cert = {"x509_common_name": [b"shop-frontend"], "transport_security_type": [b"ssl"]}
    assert client_identity(_Context(cert), "shop") == "token:shop"
    assert client_identity(_Context(cert), None) == "cert:shop-frontend"
    assert client_identity(_Context({}), None) == "ip:10.0.0.9"


def test_helpers():
    assert service_of("/visearch.v1.SearchService/Search") == "visearch.v1.SearchService"
    assert is_loopback("127.0.0.1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("search.example")


# --------------------------------------------------------------------------------------------- interceptor


def _echo(request: bytes, context) -> bytes:
    return request


def _stream(request: bytes, context):
    yield request
    yield request


@pytest.fixture
def server():
    """A real loopback server with SearchService/Search, Other/Echo (unary) and SearchService/Watch (stream),
    guarded by a SecurityInterceptor (tokens A as shop, B as ops; 1 request/s, burst 2 on SearchService)."""
    clock = Clock()
    interceptor = SecurityInterceptor(
        TokenSet(f"shop:{A},ops:{B}"),
        RateLimiter(1.0, 2, clock=clock),
        frozenset({"visearch.v1.SearchService"}),
        frozenset({"visearch.v1.SearchService"}),
    )
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[interceptor])
    srv.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "visearch.v1.SearchService",
                {
                    "Search": grpc.unary_unary_rpc_method_handler(_echo),
                    "Watch": grpc.unary_stream_rpc_method_handler(_stream),
                },
            ),
            grpc.method_handlers_generic_handler(
                "visearch.v1.Other", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
            ),
            grpc.method_handlers_generic_handler(
                "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(_echo)}
            ),
        ]
    )
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield f"127.0.0.1:{port}", clock
    srv.stop(0)


def _call(address: str, method: str, token: str | None = None, stream: bool = False):
    security = SecuritySettings(client_token=token or "")
    with client_channel(address, security, timeout_s=5) as channel:
        if stream:
            return list(channel.unary_stream(method)(b"hi"))
        return channel.unary_unary(method)(b"hi")


def _code(fn) -> tuple[grpc.StatusCode, str, dict]:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code(), info.value.details(), dict(info.value.trailing_metadata() or ())


def test_interceptor_auth(server):
    """Protected service: no or wrong token -> UNAUTHENTICATED; right token -> served. Others and health stay open."""
    address, _ = server
    code, details, _ = _code(lambda: _call(address, "/visearch.v1.SearchService/Search"))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "missing credentials" in details
    code, details, _ = _code(lambda: _call(address, "/visearch.v1.SearchService/Search", B + "x"))
    assert code == grpc.StatusCode.UNAUTHENTICATED and details == "invalid token"
    assert _call(address, "/visearch.v1.SearchService/Search", A) == b"hi"
    assert _call(address, "/visearch.v1.SearchService/Watch", B, stream=True) == [b"hi", b"hi"]
    assert _call(address, "/visearch.v1.Other/Echo") == b"hi"
    assert _call(address, "/grpc.health.v1.Health/Check") == b"hi"


def test_interceptor_rate_limit_per_token(server):
    """Burst 2 per client: the third call of a token is RESOURCE_EXHAUSTED with retry-after-ms; another token
    is unaffected; a second later the client is served again; unprotected services are never limited."""
    address, clock = server
    search = "/visearch.v1.SearchService/Search"
    assert [_call(address, search, A) for _ in range(2)] == [b"hi", b"hi"]
    code, details, trailers = _code(lambda: _call(address, search, A))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == "rate limit exceeded for client 'token:shop': 1 requests/s, burst 2; retry in 1.00 s"
    assert trailers["retry-after-ms"] == "1000"
    assert _call(address, search, B) == b"hi"
    assert [_call(address, "/visearch.v1.Other/Echo") for _ in range(5)] == [b"hi"] * 5
    clock.now += 1.0
    assert _call(address, search, A) == b"hi"


def test_interceptor_counts_refusals(server):
    """Refused calls are counted by service and reason."""
    from prometheus_client import REGISTRY

    address, _ = server

    def count(reason):
        return (
            REGISTRY.get_sample_value(
                "visearch_grpc_rejected_total", {"grpc_service": "visearch.v1.SearchService", "reason": reason}
            )
            or 0.0
        )

    before = count("missing_token")
    _code(lambda: _call(address, "/visearch.v1.SearchService/Search"))
    assert count("missing_token") == before + 1


def test_rate_limit_by_peer_without_auth():
    """Without tokens, calls are limited per peer IP."""
    limiter = RateLimiter(1.0, 1, clock=Clock())
    interceptor = SecurityInterceptor(None, limiter, None, frozenset({"visearch.v1.SearchService"}))
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[interceptor])
    srv.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "visearch.v1.SearchService", {"Search": grpc.unary_unary_rpc_method_handler(_echo)}
            )
        ]
    )
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        address = f"127.0.0.1:{port}"
        assert _call(address, "/visearch.v1.SearchService/Search") == b"hi"
        code, details, _ = _code(lambda: _call(address, "/visearch.v1.SearchService/Search"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "'ip:127.0.0.1'" in details
    finally:
        srv.stop(0)


# --------------------------------------------------------------------------------------------- client defaults


def test_client_channel_adds_deadline_token_and_keeps_a_calls_own():
    """client_channel gives calls without a timeout the default deadline, adds the bearer token, and a
    call's own authorization metadata wins."""
    seen = []

    def record(request, context):
        seen.append((context.time_remaining(), dict(context.invocation_metadata()).get("authorization")))
        return request

    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    srv.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("t.S", {"M": grpc.unary_unary_rpc_method_handler(record)})]
    )
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        with client_channel(f"127.0.0.1:{port}", SecuritySettings(client_token=A, client_timeout_s=7)) as channel:
            method = channel.unary_unary("/t.S/M")
            method(b"x")
            method(b"x", timeout=2, metadata=(("authorization", f"Bearer {B}"),))
    finally:
        srv.stop(0)
    (remaining1, auth1), (remaining2, auth2) = seen
    assert 6 < remaining1 <= 7.1 and auth1 == f"Bearer {A}"
    assert 1 < remaining2 <= 2.1 and auth2 == f"Bearer {B}"


def test_client_channel_limits_message_size():
    """Messages above max_message_bytes are refused on the client side with RESOURCE_EXHAUSTED."""
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    srv.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("t.S", {"M": grpc.unary_unary_rpc_method_handler(_echo)})]
    )
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        with client_channel(f"127.0.0.1:{port}", SecuritySettings(), max_message_bytes=4096) as channel:
            method = channel.unary_unary("/t.S/M")
            assert method(b"x" * 1000) == b"x" * 1000
            code, _, _ = _code(lambda: method(b"x" * 5000))
    finally:
        srv.stop(0)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


# --------------------------------------------------------------------------------------------- log redaction


def _redact(**fields):
    return vlog.redact(None, "info", fields)


def test_redact_bytes_become_length_markers():
    """bytes, bytearray and memoryview values, also nested, become '<N bytes>'."""
    out = _redact(event="x", content=b"\xff\xd8\xff" * 10, nested={"img": bytearray(5), "list": [memoryview(b"abcd")]})
    assert out["content"] == "<30 bytes>"
    assert out["nested"] == {"img": "<5 bytes>", "list": ["<4 bytes>"]}


def test_redact_secret_fields():
    """Secret-named fields lose their string values (nested dicts and metadata pairs too); numbers stay."""
    out = _redact(
        event="x",
        token=A,
        client_token=A,
        Authorization=f"Bearer {A}",
        password="hunter2hunter2",
        api_key="k" * 20,
        token_count=12,
        metadata=[("authorization", f"Bearer {A}"), ("x-trace-id", "t1")],
        headers={"cookie": "sid=1"},
    )
    for key in ("token", "client_token", "Authorization", "password", "api_key"):
        assert out[key] == vlog.REDACTED
    assert out["token_count"] == 12
    assert out["metadata"] == [("authorization", vlog.REDACTED), ["x-trace-id", "t1"]]
    assert out["headers"] == {"cookie": vlog.REDACTED}


def test_redact_inside_strings():
    """Registered secrets, bearer credentials, URL passwords and long bytes reprs are removed from any string."""
    secret = "registered-secret-value-123"
    vlog.register_secret(secret)
    out = _redact(
        event=f"failed with {secret}",
        error=f"header was Bearer {B}",
        uri="http://user:pa55word@milvus:19530/db",
        msg=f"bad request {b'x' * 40!r} end",
    )
    assert secret not in json.dumps(out) and B not in json.dumps(out)
    assert out["uri"] == "http://[REDACTED]@milvus:19530/db"
    assert out["msg"] == "bad request <bytes> end"
    assert _redact(event="b'ab' is short")["event"] == "b'ab' is short"


def test_redact_protobuf_messages():
    """A protobuf message (e.g. a request with image bytes) is replaced by its type and size."""
    out = _redact(event="x", image=common_pb2.Image(content=b"\x89PNG" * 100))
    assert out["image"] == "<visearch.v1.Image: 403 bytes>"


def test_configured_logging_redacts_and_drops_traceback_locals():
    """Through configure_logging: a log line with image bytes and a token shows neither; an exception's
    traceback carries no frame locals."""
    stream = io.StringIO()
    vlog.configure_logging("test", "info", stream=stream)
    try:
        log = vlog.get_logger("t")
        log.info("request", content=b"\x00PIXELDATA" * 50, authorization=f"Bearer {A}")

        def fail(image_bytes, token):
            raise ValueError("boom")

        try:
            fail(b"PIXELDATA" * 50, B)
        except ValueError:
            log.exception("failed")
        text = stream.getvalue()
    finally:
        vlog.configure_logging()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["content"] == "<500 bytes>" and lines[0]["authorization"] == vlog.REDACTED
    assert "PIXELDATA" not in text and A not in text and B not in text
    assert lines[1]["exception"][0]["exc_type"] == "ValueError"
    assert all("locals" not in frame for frame in lines[1]["exception"][0]["frames"])


def test_module_logger_follows_later_configuration():
    """A logger made before configure_logging logs with the later level (services configure after import)."""
    log = vlog.get_logger("early")
    stream = io.StringIO()
    vlog.configure_logging("test", "warning", stream=stream)
    log.info("dropped")
    vlog.configure_logging("test", "info", stream=stream)
    try:
        log.info("kept")
    finally:
        vlog.configure_logging()
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["kept"]
    assert structlog.get_config()["processors"][-2] is vlog.redact  # last before rendering


def test_default_logging_follows_a_swapped_stderr(monkeypatch):
    """Configured while a harness (typer's CliRunner, pytest capture) had swapped sys.stderr, logging keeps
    working after that stream is closed: the default stream is looked up per event, not bound once."""
    import sys

    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", swapped)
    vlog.configure_logging("test", "info")
    log = vlog.get_logger("swap")
    log.info("while_swapped")
    assert "while_swapped" in swapped.getvalue()
    swapped.close()
    after = io.StringIO()
    monkeypatch.setattr(sys, "stderr", after)
    try:
        log.info("after_close")
    finally:
        vlog.configure_logging()
    assert json.loads(after.getvalue())["event"] == "after_close"
