"""API security against real service processes: TLS, mutual TLS, bearer tokens, rate limits, message limits, logs.

A CA, a server certificate (127.0.0.1 / localhost) and client certificates are made with `cryptography`.
The photos are ingested with the CLI into a Milvus Lite database, then two real processes start:

- embedding: mutual TLS (client certificate required) and a token required on every service;
- ranking: TLS (server certificate only), token on SearchService, rate limit 1/s burst 3, 1 MiB messages;
  it calls the embedding service over mutual TLS with its own client certificate and token.

Certificate rotation (files replaced while a server runs) is checked on an in-process server.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.stack import ServiceProcess, wait_until
from tests.pki import issue, make_ca
from visearch.shared.config import SecuritySettings, ServiceSettings
from visearch.shared.errors import ConfigError
from visearch.shared.grpcutil import client_channel, serve
from visearch.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, search_pb2, search_pb2_grpc

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite]

# One token (client) per test that searches, so the rate limit (1/s, burst 3 per client) of one test
# does not spill into another.
TOKENS = {
    "ranking": "rk-7Yw2Qp9Lx4Vb1Nc8Zt3Hs6",
    "cli": "cl-Fq5Jm2Wd8Rk4Pv7Xg1Tb9",
    "burst": "bu-Lc6Hn3Sy9Qe2Wm5Ka8Dz4",
    "other": "ot-Vd2Mx7Kq4Hy9Bn3Rs6Fw1",
    "size": "sz-Pk8Gc3Tw6Lz1Ne5Xj9Qa2",
    "logs": "lg-Hr4Yb9Dm2Sf7Kv1Wq6Cn3",
    "tls": "tl-Qm3Zr8Wx5Kd2Jp7Hb4Ls9",
}
WRONG_TOKEN = "wr-Ux4Bt8Mq1Ze6Yh3Nd7Gp2"
# Bytes that look like nothing any library would log by itself: they must not reach a log line, raw or escaped.
IMAGE_MARKER = b"\xff\xd8\xffPIXELS-7f3a9c-" + bytes(range(200, 256))


# --------------------------------------------------------------------------------------------- certificates


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """CA, server certificate, client certificates of that CA, and a client certificate of another CA."""
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca("visearch test CA")
    (folder / "ca.pem").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    return {
        "dir": folder,
        "ca": str(folder / "ca.pem"),
        "server": issue(ca, "visearch-server", True, folder, "server"),
        "ranking": issue(ca, "ranking", False, folder, "ranking-client"),
        "cli": issue(ca, "cli", False, folder, "cli-client"),
        "rogue": issue(make_ca("rogue CA"), "cli", False, folder, "rogue-client"),
        "make_ca": make_ca,
        "issue": issue,
    }


# --------------------------------------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def secured(built_models, pki, tmp_path_factory):
    """Ingest the photos, then start embedding (mutual TLS) and ranking (TLS) with tokens; SIGTERM them after."""
    tmp = tmp_path_factory.mktemp("secured")
    env = {"VISEARCH_MILVUS_URI": str(tmp / "index.db"), "VISEARCH_TENANT": "default"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "visearch",
            "ingest",
            "--dataset",
            "photos",
            "--no-progress",
            "--stages",
            "embedding,indexer",
        ],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=300,
    )
    common = {
        **env,
        "VISEARCH_LOG_LEVEL": "debug",
        "VISEARCH_SECURITY_TLS_CERT_FILE": pki["server"][0],
        "VISEARCH_SECURITY_TLS_KEY_FILE": pki["server"][1],
        "VISEARCH_SECURITY_TLS_CA_FILE": pki["ca"],
        "VISEARCH_SECURITY_TLS_CLIENT_CERT_FILE": pki["ranking"][0],
        "VISEARCH_SECURITY_TLS_CLIENT_KEY_FILE": pki["ranking"][1],
        "VISEARCH_SECURITY_AUTH_TOKENS": ",".join(f"{k}:{v}" for k, v in TOKENS.items()),
        "VISEARCH_SECURITY_CLIENT_TOKEN": TOKENS["ranking"],
    }
    embedding = ServiceProcess(
        "embedding",
        {**common, "VISEARCH_SECURITY_TLS_CLIENT_CA_FILE": pki["ca"], "VISEARCH_SECURITY_AUTH_SERVICES": "*"},
        tmp,
    )
    ranking = ServiceProcess(
        "ranking",
        {
            **common,
            "VISEARCH_EMBEDDING_ADDR": embedding.address,
            "VISEARCH_SECURITY_RATE_LIMIT_PER_S": "1",
            "VISEARCH_SECURITY_RATE_LIMIT_BURST": "3",
            "VISEARCH_GRPC_MAX_MESSAGE_BYTES": str(1024 * 1024),
        },
        tmp,
    )
    try:
        for proc in (embedding, ranking):
            proc.start(wait=False)
        for proc in (embedding, ranking):
            wait_until(lambda p=proc: _serving(p, pki), timeout_s=180, interval_s=0.3, what=f"{proc.service} SERVING")
        yield {"embedding": embedding, "ranking": ranking}
    finally:
        codes = {"embedding": embedding.stop(), "ranking": ranking.stop()}
    assert codes == {"embedding": 0, "ranking": 0}


def settings(pki, client: str | None = "cli", token: str | None = TOKENS["cli"], ca: str = "ca") -> SecuritySettings:
    """Client-side security settings: the test CA, a client certificate (or none), a token (or none)."""
    cert = pki[client] if client else (None, None)
    return SecuritySettings(
        tls_ca_file=pki[ca], tls_client_cert_file=cert[0], tls_client_key_file=cert[1], client_token=token or ""
    )


def _serving(proc: ServiceProcess, pki) -> bool:
    assert proc.process is not None and proc.process.poll() is None, f"{proc.service} exited:\n{proc.log_tail()}"
    with client_channel(proc.address, settings(pki, token=None)) as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1).status
        except grpc.RpcError:
            return False
    return status == health_pb2.HealthCheckResponse.SERVING


def search(address: str, security: SecuritySettings, request=None, **kwargs):
    with client_channel(address, security) as channel:
        return search_pb2_grpc.SearchServiceStub(channel).Search(
            request or search_pb2.SearchRequest(text="coffee", top_k=3), timeout=30, **kwargs
        )


def rpc_code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details() or ""


# --------------------------------------------------------------------------------------------- tests


def test_plaintext_client_is_refused(secured):
    """A TLS server does not talk to a plaintext client (the handshake fails: UNAVAILABLE)."""
    for proc in secured.values():
        with grpc.insecure_channel(proc.address) as channel:
            code, _ = rpc_code(
                lambda: health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            )
        assert code == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_certificate_of_the_ca(secured, pki):
    """Under mutual TLS, no client certificate or one from another CA fails the handshake; the right one works."""
    request = embedding_pb2.EmbedTextRequest(texts=["red dress"])
    address = secured["embedding"].address
    for security in (settings(pki, client=None), settings(pki, client="rogue")):
        with client_channel(address, security) as channel:
            code, _ = rpc_code(
                lambda ch=channel: embedding_pb2_grpc.EmbeddingServiceStub(ch).EmbedText(request, timeout=10)
            )
        assert code == grpc.StatusCode.UNAVAILABLE
    with client_channel(address, settings(pki)) as channel:
        response = embedding_pb2_grpc.EmbeddingServiceStub(channel).EmbedText(request, timeout=30)
    assert len(response.vectors) == 1 and len(response.vectors[0].values) == 384


def test_tls_without_client_certificate_is_enough_where_mutual_tls_is_off(secured, pki):
    """The ranking server (TLS, no client CA) accepts a client without a certificate; the client verifies the server."""
    response = search(secured["ranking"].address, settings(pki, client=None, token=TOKENS["tls"]))
    assert "photo-coffee" in [h.image_id for h in response.hits]
    # A client that trusts another CA refuses the server's certificate.
    other = pki["dir"] / "other-ca.pem"
    other.write_bytes(make_ca("other")[1].public_bytes(serialization.Encoding.PEM))
    pki_other = {**pki, "other": str(other)}
    code, _ = rpc_code(lambda: search(secured["ranking"].address, settings(pki_other, ca="other", token=TOKENS["tls"])))
    assert code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("service", ["ranking", "embedding"])
def test_missing_or_wrong_token_is_unauthenticated(secured, pki, service):
    """No token or a token that is not configured -> UNAUTHENTICATED with a message; a right token works."""
    address = secured[service].address

    def call(token):
        if service == "ranking":
            return search(address, settings(pki, token=token))
        with client_channel(address, settings(pki, token=token)) as channel:
            return embedding_pb2_grpc.EmbeddingServiceStub(channel).EmbedText(
                embedding_pb2.EmbedTextRequest(texts=["coffee"]), timeout=30
            )

    for token in (None, WRONG_TOKEN):
        code, details = rpc_code(lambda t=token: call(t))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert ("missing credentials" if token is None else "invalid token") in details
    assert call(TOKENS["cli"])
    # The token of a call wins over the channel's: a wrong one given per call is refused.
    if service == "ranking":
        code, _ = rpc_code(
            lambda: search(address, settings(pki), metadata=(("authorization", f"Bearer {WRONG_TOKEN}"),))
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED


def test_health_check_needs_no_token(secured, pki):
    """grpc.health.v1 answers SERVING without a token (probes), for every service name."""
    for proc, name in (
        (secured["ranking"], "visearch.v1.SearchService"),
        (secured["embedding"], "visearch.v1.EmbeddingService"),
    ):
        with client_channel(proc.address, settings(pki, token=None)) as channel:
            status = (
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            )
        assert status == health_pb2.HealthCheckResponse.SERVING


def test_burst_over_the_rate_limit_is_resource_exhausted_then_recovers(secured, pki):
    """Rate 1/s, burst 3 per client: a burst of 8 gets 3 answers then RESOURCE_EXHAUSTED (with retry-after);
    another client is not affected; after a second the client is served again."""
    address = secured["ranking"].address
    burst = settings(pki, token=TOKENS["burst"])
    outcomes = []
    with client_channel(address, burst) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        for _ in range(8):
            try:
                stub.Search(search_pb2.SearchRequest(text="coffee", top_k=1), timeout=30)
                outcomes.append("ok")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
                assert "rate limit exceeded for client 'token:burst'" in exc.details()
                retry = dict(exc.trailing_metadata() or ()).get("retry-after-ms")
                assert retry is not None and 0 < int(retry) <= 1000
                outcomes.append("limited")
    assert outcomes[:3] == ["ok"] * 3 and outcomes.count("limited") >= 4, outcomes
    assert search(address, settings(pki, token=TOKENS["other"])).hits  # another client has its own bucket
    time.sleep(1.1)
    assert search(address, burst).hits


def test_oversized_message_is_resource_exhausted(secured, pki):
    """A request over VISEARCH_GRPC_MAX_MESSAGE_BYTES (1 MiB here) is refused with RESOURCE_EXHAUSTED."""
    big = search_pb2.SearchRequest(image=common_pb2.Image(content=os.urandom(1024 * 1024 + 1024)))
    security = settings(pki, token=TOKENS["size"])
    code, details = rpc_code(lambda: search(secured["ranking"].address, security, big))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert search(secured["ranking"].address, security).hits  # still serving


def test_logs_hold_neither_tokens_nor_image_bytes(secured, pki):
    """After refused and served calls, and an undecodable image: no token and no image bytes in the service logs."""
    address = secured["ranking"].address
    code, _ = rpc_code(lambda: search(address, settings(pki, token=WRONG_TOKEN)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    bad = search_pb2.SearchRequest(image=common_pb2.Image(content=IMAGE_MARKER))
    code, _ = rpc_code(lambda: search(address, settings(pki, token=TOKENS["logs"]), bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert search(address, settings(pki, token=TOKENS["logs"])).hits
    logs = {name: proc.log_path.read_bytes() for name, proc in secured.items()}
    assert b'"rpc_refused"' in logs["ranking"] and b'"reason": "invalid_token"' in logs["ranking"]
    assert b'"rpc_error"' in logs["ranking"]  # the bad image was logged, without its bytes
    marker_forms = [IMAGE_MARKER, b"PIXELS-7f3a9c", repr(IMAGE_MARKER).encode(), IMAGE_MARKER.hex().encode()]
    for name, text in logs.items():
        for secret in [*TOKENS.values(), WRONG_TOKEN]:
            assert secret.encode() not in text, f"token in {name} log"
        for form in marker_forms:
            assert form not in text, f"image bytes in {name} log"
        assert b"BEGIN" not in text  # no key or certificate material


def test_cli_reaches_the_secured_servers(secured, pki):
    """`visearch health` and `visearch search --server` use TLS, the client certificate and the token from
    VISEARCH_SECURITY_*; without the token the search exits 2 naming UNAUTHENTICATED."""
    env = {
        **os.environ,
        "VISEARCH_SECURITY_TLS_CA_FILE": pki["ca"],
        "VISEARCH_SECURITY_TLS_CLIENT_CERT_FILE": pki["cli"][0],
        "VISEARCH_SECURITY_TLS_CLIENT_KEY_FILE": pki["cli"][1],
        "VISEARCH_SECURITY_CLIENT_TOKEN": TOKENS["tls"],
    }
    cli = [sys.executable, "-m", "visearch"]
    health = subprocess.run(
        [*cli, "health", secured["ranking"].address, secured["embedding"].address],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert health.returncode == 0 and health.stdout.count("SERVING") == 2, health.stdout + health.stderr
    found = subprocess.run(
        [*cli, "search", "--server", secured["ranking"].address, "--text", "coffee", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0 and "photo-coffee" in found.stdout, found.stdout + found.stderr
    env.pop("VISEARCH_SECURITY_CLIENT_TOKEN")
    refused = subprocess.run(
        [*cli, "search", "--server", secured["ranking"].address, "--text", "coffee"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "UNAUTHENTICATED" in refused.stdout, refused.stdout + refused.stderr


# --------------------------------------------------------------------------------------------- in-process servers


@contextlib.contextmanager
def running(security: SecuritySettings, register=lambda server: []):
    """serve() in a thread on a free loopback port with ``security``; yields the address."""
    stop, ports = threading.Event(), []
    thread = threading.Thread(
        target=serve,
        args=("test", register, ServiceSettings(grpc_port=0, metrics_port=0)),
        kwargs={"stop_event": stop, "ready": ports.append, "security": security},
        daemon=True,
    )
    thread.start()
    try:
        wait_until(lambda: ports, timeout_s=10, interval_s=0.05, what="server bound")
        yield f"127.0.0.1:{ports[0]}"
    finally:
        stop.set()
        thread.join(timeout=30)


def test_mutual_tls_client_certificate_names_the_rate_limited_client(pki):
    """Without tokens, under mutual TLS, the rate limit is per client certificate (its common name)."""

    def register(server):
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "visearch.v1.SearchService",
                    {"Search": grpc.unary_unary_rpc_method_handler(lambda request, context: request)},
                )
            ]
        )
        return ["visearch.v1.SearchService"]

    security = SecuritySettings(
        tls_cert_file=pki["server"][0],
        tls_key_file=pki["server"][1],
        tls_client_ca_file=pki["ca"],
        rate_limit_per_s=0.01,
        rate_limit_burst=1,
    )
    with running(security, register) as address:
        for client in ("cli", "ranking"):
            with client_channel(address, settings(pki, client=client, token=None)) as channel:
                method = channel.unary_unary("/visearch.v1.SearchService/Search")
                assert method(b"hi", timeout=5) == b"hi"
                code, details = rpc_code(lambda m=method: m(b"hi", timeout=5))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and f"'cert:{client}'" in details


def test_rotated_server_certificate_is_used_without_restart(pki, tmp_path):
    """Replacing the certificate files of a running server: new connections get the new certificate,
    and a client that trusts only the new CA gets through."""
    server_dir = tmp_path
    old_ca = pki["make_ca"]("old CA")
    new_ca = pki["make_ca"]("new CA")
    cert, key = issue(old_ca, "s", True, server_dir, "server")
    ca_files = {}
    for label, ca in (("old", old_ca), ("new", new_ca)):
        ca_files[label] = str(server_dir / f"{label}-ca.pem")
        (server_dir / f"{label}-ca.pem").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    security = SecuritySettings(tls_cert_file=cert, tls_key_file=key)
    with running(security) as address:

        def check(ca_label: str) -> grpc.StatusCode:
            with client_channel(address, SecuritySettings(tls_ca_file=ca_files[ca_label])) as channel:
                try:
                    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                    return grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    return exc.code()

        assert check("old") == grpc.StatusCode.OK and check("new") == grpc.StatusCode.UNAVAILABLE
        time.sleep(0.01)  # distinct modification times
        issue(new_ca, "s", True, server_dir, "server")
        os.utime(cert), os.utime(key)
        assert check("new") == grpc.StatusCode.OK and check("old") == grpc.StatusCode.UNAVAILABLE


def test_tls_names_are_checked_on_balanced_targets(pki):
    """Targets with a resolver scheme keep the server certificate's name check: `dns:///localhost:<port>` is checked
    against `localhost`, a static list `ipv4:127.0.0.1:<p1>,127.0.0.1:<p2>` against 127.0.0.1 (and its calls go
    round-robin to both TLS servers); a name the certificate does not carry still fails the handshake, and a
    static list over several hosts without VISEARCH_SECURITY_TLS_SERVER_NAME is a configuration error."""
    answered: list[str] = []

    def register_as(name: str):
        def register(server):
            def echo(request, context):
                answered.append(name)
                return request

            server.add_generic_rpc_handlers(
                [grpc.method_handlers_generic_handler("test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})]
            )
            return ["test.Echo"]

        return register

    security = SecuritySettings(tls_cert_file=pki["server"][0], tls_key_file=pki["server"][1])
    client = SecuritySettings(tls_ca_file=pki["ca"])
    with running(security, register_as("a")) as first, running(security, register_as("b")) as second:
        port_a, port_b = first.rsplit(":", 1)[1], second.rsplit(":", 1)[1]

        def echo(target: str, settings: SecuritySettings) -> grpc.StatusCode:
            with client_channel(target, settings) as channel:
                try:
                    channel.unary_unary("/test.Echo/Echo")(b"hi", timeout=5)
                    return grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    return exc.code()

        assert echo(f"dns:///localhost:{port_a}", client) == grpc.StatusCode.OK
        with client_channel(f"ipv4:127.0.0.1:{port_a},127.0.0.1:{port_b}", client) as channel:
            call = channel.unary_unary("/test.Echo/Echo")
            # Calls go to the first connection ready until the second handshake is done, then in turn.
            wait_until(lambda: call(b"hi", timeout=5) and {"a", "b"} <= set(answered), timeout_s=10, interval_s=0.01)
            answered.clear()
            for _ in range(10):
                call(b"hi", timeout=5)
        assert min(answered.count("a"), answered.count("b")) >= 3, answered
        wrong_name = SecuritySettings(tls_ca_file=pki["ca"], tls_server_name="not-in-the-certificate")
        assert echo(f"dns:///localhost:{port_a}", wrong_name) == grpc.StatusCode.UNAVAILABLE
        named = SecuritySettings(tls_ca_file=pki["ca"], tls_server_name="localhost")
        assert echo(f"ipv4:127.0.0.1:{port_a},127.0.0.1:{port_b}", named) == grpc.StatusCode.OK
        with pytest.raises(ConfigError, match="TLS_SERVER_NAME"):
            client_channel(f"ipv4:127.0.0.1:{port_a},127.0.0.2:{port_b}", client)
