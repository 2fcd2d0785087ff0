"""The metrics port: Prometheus exposition and /livez, on their own threads (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from wsgiref.simple_server import make_server

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from visearch.shared import metrics


@pytest.fixture
def serve_app() -> Iterator[callable]:
    servers = []

    def start(live=None) -> str:
        server = make_server("127.0.0.1", 0, metrics.metrics_app(live), handler_class=metrics._QuietHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_and_livez(serve_app):
    base = serve_app()
    status, body = get(f"{base}/metrics")
    assert status == 200 and "visearch_stage_duration_seconds" in body
    assert get(f"{base}/livez") == (200, "ok\n")


def test_livez_follows_its_check(serve_app):
    alive = threading.Event()
    base = serve_app(alive.is_set)
    assert get(f"{base}/livez") == (503, "not live\n")
    alive.set()
    assert get(f"{base}/livez") == (200, "ok\n")


def test_livez_answers_while_the_grpc_work_pool_is_saturated(serve_app):
    """Why liveness is not the gRPC health check: with every thread of a gRPC server busy (a slow dependency),
    the health check queues behind the work and times out, which would restart a healthy pod; /livez answers."""
    release = threading.Event()

    def slow(request: bytes, context) -> bytes:
        release.wait(30)
        return b""

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Slow", {"Call": grpc.unary_unary_rpc_method_handler(slow)})]
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    base = serve_app()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stuck = [channel.unary_unary("/test.Slow/Call").future(b"", timeout=30) for _ in range(2)]
            time.sleep(0.5)  # both calls reach the server's two threads
            with pytest.raises(grpc.RpcError) as info:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert get(f"{base}/livez") == (200, "ok\n")
            release.set()
            for call in stuck:
                call.result()
    finally:
        release.set()
        server.stop(None)


def test_start_metrics_server_port_zero_is_disabled():
    metrics.start_metrics_server(0)  # no thread, no error
