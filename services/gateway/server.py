"""``visearch serve gateway``: the HTTP/JSON gateway and playground as a process (uvicorn), or in a thread.

TLS as the gRPC servers (``VISEARCH_SECURITY_TLS_CERT_FILE`` / ``_KEY_FILE``; ``_TLS_CLIENT_CA_FILE``: client
certificates required); unlike the gRPC servers, a changed certificate takes effect on restart. SIGTERM: uvicorn
stops accepting, finishes the requests in flight (``VISEARCH_GRPC_DRAIN_S``) and exits 0.

``VISEARCH_GATEWAY_METRICS_PORT`` adds a plain-HTTP port on threads of its own, as every service's metrics port:
``/metrics``, ``/livez``, and ``/healthz`` / ``/readyz`` for the kubelet's probes (it cannot present a client
certificate when the API port requires one).
"""

from __future__ import annotations

import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import uvicorn

from visearch.services.gateway.app import Gateway
from visearch.services.gateway.backend import Backend
from visearch.shared.config import GatewaySettings, SecuritySettings, ServiceSettings
from visearch.shared.logging import configure_logging, get_logger
from visearch.shared.metrics import metrics_app
from visearch.shared.security import is_loopback
from visearch.shared.thumbnails import ThumbnailStore

log = get_logger("gateway")


def uvicorn_config(app: Any, host: str, port: int, security: SecuritySettings, drain_s: float = 10.0) -> uvicorn.Config:
    """The uvicorn configuration of the gateway: TLS / mutual TLS per ``security``, no access log (metrics
    count requests), structlog's logging kept."""
    tls: dict[str, Any] = {}
    if security.tls_cert_file is not None:
        tls = {"ssl_certfile": str(security.tls_cert_file), "ssl_keyfile": str(security.tls_key_file)}
        if security.tls_client_ca_file is not None:
            tls.update(ssl_ca_certs=str(security.tls_client_ca_file), ssl_cert_reqs=ssl.CERT_REQUIRED)
    elif not is_loopback(host):
        log.warning(
            "plaintext_http", address=f"{host}:{port}", hint="set VISEARCH_SECURITY_TLS_CERT_FILE and _KEY_FILE"
        )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, round(drain_s)),
        **tls,
    )


class _ProbeServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Probes and scrapes every few seconds: no access log."""


def probe_app(ready: Callable[[], bool]) -> Callable[..., Iterable[bytes]]:
    """The WSGI app of the gateway's metrics port: ``/healthz`` (200 while the process runs), ``/readyz`` (200
    while ``ready()``, else 503), and ``/metrics`` and ``/livez`` as on every service's metrics port."""
    metrics = metrics_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path not in ("/healthz", "/readyz"):
            return metrics(environ, start_response)
        ok = path == "/healthz" or ready()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
        return [b'{"status": "ok"}' if ok else b'{"status": "unavailable"}']

    return app


def start_probe_server(port: int, host: str, ready: Callable[[], bool]) -> WSGIServer | None:
    """Serve :func:`probe_app` on ``host:port`` in a daemon thread; None when ``port`` is 0.

    Raises:
        OSError: the port cannot be bound.
    """
    if not port:
        return None
    server = make_server(host, port, probe_app(ready), _ProbeServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="gateway-probes", daemon=True).start()
    return server


class GatewayThread:
    """A gateway served by uvicorn in a background thread (tests, benchmarks, ``visearch demo --serve``).

    Args:
        gateway: the app's state; host / port: where to listen (port 0: a free one, see :attr:`port`).
    """

    def __init__(self, gateway: Gateway, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = uvicorn.Server(uvicorn_config(gateway.asgi(), host, port, gateway.security, drain_s=2.0))
        self.thread = threading.Thread(target=self.server.run, name="gateway-http", daemon=True)
        self.port = port

    def start(self, timeout_s: float = 30.0) -> GatewayThread:
        """Start serving; returns once the socket listens.

        Raises:
            RuntimeError: the server did not start within ``timeout_s`` (e.g. the port is taken).
        """
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start (port taken?)")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)


def main(
    settings: GatewaySettings | None = None,
    backend: Backend | None = None,
    thumbnails: ThumbnailStore | None = None,
) -> int:
    """Serve the gateway until SIGTERM/SIGINT; returns the exit code.

    Args:
        settings: ``VISEARCH_GATEWAY_*`` (default from the environment).
        backend: the services to call; None: channels to ``VISEARCH_GATEWAY_SEARCH_ADDR`` and ``VISEARCH_*_ADDR``.
        thumbnails: the thumbnail store; None: ``VISEARCH_THUMBNAIL_DIR``.

    Raises:
        ConfigError: no backend given and no search address set.
    """
    settings = settings or GatewaySettings()
    service = ServiceSettings()
    configure_logging("gateway", service.log_level)
    security = SecuritySettings()
    backend = backend or Backend.from_settings(settings, service, security)
    gateway = Gateway(
        backend,
        settings,
        security=security,
        thumbnails=thumbnails or ThumbnailStore.from_settings(),
        default_tenant=service.tenant,
    )
    server = uvicorn.Server(
        uvicorn_config(gateway.asgi(), settings.host, settings.port, security, service.grpc_drain_s)
    )
    # Ready while uvicorn serves (not yet started, or draining after SIGTERM: not) and the ranking service answers.
    probes = start_probe_server(
        settings.metrics_port, settings.host, lambda: server.started and not server.should_exit and backend.ready()
    )
    log.info(
        "serving",
        service="gateway",
        address=f"{settings.host}:{settings.port}",
        metrics_port=settings.metrics_port or None,
        tls=security.tls_enabled,
    )
    if threading.current_thread() is threading.main_thread():
        # uvicorn stops on SIGTERM / SIGINT, then raises the signal again to the handler it found on start: with
        # Python's (exit at once, or KeyboardInterrupt) the probes server and the backend (an embedded platform's
        # store) would never close, nor would main return 0.
        def stop(_signum: int, _frame: object) -> None:
            server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
    try:
        server.run()
    finally:
        if probes is not None:
            probes.shutdown()
            probes.server_close()
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
