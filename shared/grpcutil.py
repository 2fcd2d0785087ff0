"""gRPC plumbing shared by every server: error mapping, timing, in-process stubs, server start-up, client channels.

Servicer methods are written once, gRPC-agnostic: they take a request message and raise
:class:`VisearchError` subclasses. :func:`rpc_method` turns those into gRPC statuses when called by
a real server, and :class:`InProcessStub` lets another service call the same servicer in one
process (embedded mode) with a stub-shaped API, so callers never know which they hold.

Security (``VISEARCH_SECURITY_*``, :mod:`visearch.shared.security`): :func:`serve` listens with TLS (and
mutual TLS) when configured and installs the auth / rate-limit interceptor; :func:`client_channel` is the
one way a process opens a channel to another service (TLS, client certificate, bearer token, message size
limits and a default deadline).

Load balancing: :func:`client_channel` balances calls with gRPC's ``round_robin`` policy over every address
its target resolves to (``dns:///<headless Service>:<port>``: every ready pod, re-resolved when a connection
closes; ``ipv4:h1:p1,h2:p2``: a static list), and :func:`serve` closes connections at
``VISEARCH_GRPC_MAX_CONNECTION_AGE_S``, so clients re-resolve and reach pods added since.
"""

from __future__ import annotations

import functools
import json
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from visearch.shared import errors
from visearch.shared.config import (
    GRPC_MIN_PING_INTERVAL_S,
    GrpcLbPolicy,
    SecuritySettings,
    ServiceSettings,
)
from visearch.shared.logging import get_logger
from visearch.shared.metrics import GRPC_SECONDS
from visearch.shared.security import (
    AUTH_METADATA_KEY,
    ClientDefaults,
    channel_credentials,
    is_loopback,
    server_credentials,
    server_interceptors,
)

if TYPE_CHECKING:
    from visearch.shared.pipeline import Stage

log = get_logger("grpc")

_ServicerT = TypeVar("_ServicerT")
_RequestT = TypeVar("_RequestT")
_ResponseT = TypeVar("_ResponseT")
# A servicer method as written (``(self, request, context)``; context None for an in-process call), and as
# :func:`rpc_method` returns it.
_ServicerMethod = Callable[[_ServicerT, _RequestT, grpc.ServicerContext | None], _ResponseT]

_CODE_TO_ERROR = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidImageError,
    grpc.StatusCode.NOT_FOUND: errors.NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: errors.ImageFetchError,
    grpc.StatusCode.UNAVAILABLE: errors.DependencyUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DependencyUnavailableError,
}
# The ErrorInfo domain of visearch's errors in a status's details (google.rpc.ErrorInfo, AIP-193).
ERROR_DOMAIN = "visearch"
_ERRORS_BY_NAME = {
    cls.__name__: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.VisearchError)
}


def error_status(exc: errors.VisearchError) -> grpc.Status:
    """The gRPC status of a VisearchError: its code and message, and a ``google.rpc.ErrorInfo`` detail (domain
    :data:`ERROR_DOMAIN`, ``reason`` the error's reason, metadata ``error`` its class name) in the
    ``grpc-status-details-bin`` trailer, so that the caller restores the exact error (:func:`error_from_rpc`)."""
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata={"error": type(exc).__name__})
    )
    return rpc_status.to_status(status_pb2.Status(code=exc.code.value[0], message=str(exc), details=[detail]))


def rpc_method(
    service: str,
) -> Callable[[_ServicerMethod[_ServicerT, _RequestT, _ResponseT]], _ServicerMethod[_ServicerT, _RequestT, _ResponseT]]:
    """Decorator for servicer methods ``(self, request, context)``: time them, map errors to statuses.

    With a real gRPC ``context``, a VisearchError aborts the call with its ``code``, message and reason
    (:func:`error_status`) and any other exception with INTERNAL; with ``context=None`` (in-process call) the
    exception propagates.
    """

    def wrap(
        method: _ServicerMethod[_ServicerT, _RequestT, _ResponseT],
    ) -> _ServicerMethod[_ServicerT, _RequestT, _ResponseT]:
        @functools.wraps(method)
        def handler(self: _ServicerT, request: _RequestT, context: grpc.ServicerContext | None = None) -> _ResponseT:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return method(self, request, context)
            except errors.VisearchError as exc:
                code = exc.code
                if context is None:
                    raise
                log.info(
                    "rpc_error",
                    service=service,
                    method=method.__name__,
                    code=code.name,
                    reason=exc.reason,
                    error=str(exc),
                )
                context.abort_with_status(error_status(exc))
            except Exception as exc:
                code = grpc.StatusCode.INTERNAL
                if context is None:
                    raise
                log.exception("rpc_internal_error", service=service, method=method.__name__)
                context.abort(code, f"internal error: {type(exc).__name__}")
            finally:
                GRPC_SECONDS.labels(grpc_service=service, grpc_method=method.__name__, grpc_code=code.name).observe(
                    time.perf_counter() - start
                )

        return handler

    return wrap


def error_from_rpc(exc: grpc.RpcError, target: str) -> errors.VisearchError:
    """The VisearchError of a failed client call: the exact class and reason a visearch server sent
    (:func:`error_status`), else the class matching the status code (unknown codes become UNAVAILABLE)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    cls, reason = _CODE_TO_ERROR.get(code, errors.DependencyUnavailableError), None
    info = _error_info(exc)
    if info is not None:
        cls, reason = _ERRORS_BY_NAME.get(info.metadata.get("error", ""), cls), info.reason or None
    return cls(f"{target}: {code.name}: {exc.details() if hasattr(exc, 'details') else exc}", reason=reason)


def _error_info(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The visearch ErrorInfo in a failed call's status details, or None (no details, another domain, or a
    status whose details do not match its code and message)."""
    if not hasattr(exc, "trailing_metadata"):
        return None
    try:
        # A failed call's RpcError is also its grpc.Call (code, details, trailing metadata).
        status = rpc_status.from_call(cast(grpc.Call, exc))
    except ValueError:
        return None
    for detail in status.details if status is not None else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) and detail.Unpack(info) and info.domain == ERROR_DOMAIN:
            return info
    return None


class InProcessStub:
    """Stub-shaped access to a servicer in the same process: ``stub.Method(request, timeout=...)``."""

    def __init__(self, servicer: object) -> None:
        self._servicer = servicer

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._servicer, name)

        def call(request: Any, timeout: float | None = None, metadata: Any = None) -> Any:  # noqa: ARG001 (stub signature)
            return method(request, None)

        return call


# Resolver schemes of a gRPC target (gRPC's doc/naming.md); a target without one is resolved by DNS.
_RESOLVER_SCHEMES = frozenset({"dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock", "xds"})
# How long a keepalive ping may go unanswered before the connection is dropped (and the target re-resolved).
_KEEPALIVE_TIMEOUT_MS = 20_000


def _address_host(address: str) -> str:
    """The host of ``host[:port]`` or ``[ipv6][:port]`` (brackets removed)."""
    if address.startswith("["):
        return address[1:].partition("]")[0]
    if address.count(":") > 1:  # a bare IPv6 address, no port
        return address
    return address.rsplit(":", 1)[0]


def target_hosts(target: str) -> list[str]:
    """The hosts a gRPC target names: ``host:port`` and ``dns:[//authority/]host:port`` one, ``ipv4:h1:p1,h2:p2``
    / ``ipv6:[h1]:p1,...`` each of theirs, ``unix:``/``unix-abstract:``/``vsock:`` the local machine
    (``localhost``). A leading word that is not a resolver scheme is a host (``localhost:50051``)."""
    scheme, sep, rest = target.partition(":")
    if not sep or scheme not in _RESOLVER_SCHEMES:
        return [_address_host(target)]
    if scheme in ("unix", "unix-abstract", "vsock"):
        return ["localhost"]
    if scheme in ("ipv4", "ipv6"):
        return [_address_host(a) for a in rest.split(",") if a]
    if rest.startswith("//"):  # dns://authority/host:port, xds:///name
        rest = rest[2:].partition("/")[2]
    return [_address_host(rest)]


def _static_list_authority(target: str) -> str | None:
    """The authority of an ``ipv4:``/``ipv6:`` target of several addresses on one host: its first address.
    gRPC would use the whole list, which no server certificate names (TLS fails its host check). None for any
    other target (gRPC's default authority is right) or for a list of several hosts."""
    scheme, _, rest = target.partition(":")
    addresses = [a for a in rest.split(",") if a] if scheme in ("ipv4", "ipv6") else []
    if len(addresses) < 2 or len({_address_host(a) for a in addresses}) > 1:
        return None
    return addresses[0]


def channel_options(
    target: str,
    settings: SecuritySettings,
    service: ServiceSettings,
    *,
    max_message_bytes: int | None = None,
    lb_policy: GrpcLbPolicy | None = None,
) -> list[tuple[str, int | str]]:
    """The channel arguments of :func:`client_channel`: message size limits, the load-balancing policy (through
    the service config, so DNS TXT records cannot replace it), DNS re-resolution pace, keepalive, and the names
    checked in the server certificate.

    Raises:
        ConfigError: a TLS channel to a static list of several hosts without ``tls_server_name`` (no one name
            to check in their certificates).
    """
    limit = max_message_bytes or service.grpc_max_message_bytes
    policy = lb_policy or service.grpc_lb_policy
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.service_config", json.dumps({"loadBalancingConfig": [{policy: {}}]})),
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.dns_min_time_between_resolutions_ms", round(service.grpc_dns_min_reresolve_s * 1000)),
    ]
    if service.grpc_keepalive_s > 0:
        options += [
            ("grpc.keepalive_time_ms", round(service.grpc_keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
    authority = _static_list_authority(target)
    if authority:
        options.append(("grpc.default_authority", authority))
    if settings.tls_server_name:
        options.append(("grpc.ssl_target_name_override", settings.tls_server_name))
    elif settings.client_tls_enabled and len(set(target_hosts(target))) > 1:
        raise errors.ConfigError(
            f"{target}: TLS to a list of several hosts needs VISEARCH_SECURITY_TLS_SERVER_NAME, the one name "
            "their certificates carry (or a dns:/// name that resolves to them all)"
        )
    return options


def client_channel(
    address: str,
    settings: SecuritySettings | None = None,
    *,
    max_message_bytes: int | None = None,
    timeout_s: float | None = None,
    lb_policy: GrpcLbPolicy | None = None,
) -> grpc.Channel:
    """A channel to another service at ``address`` (a gRPC target), configured by ``settings``.

    The target is ``host:port`` (resolved by DNS), ``dns:///host:port`` (the same, explicitly: with a Kubernetes
    headless Service, one address per ready pod) or a static list ``ipv4:h1:p1,h2:p2`` (``ipv6:[h1]:p1,...``).
    Calls are balanced per call over every resolved address by ``lb_policy`` (default
    ``VISEARCH_GRPC_LB_POLICY``, ``round_robin``); the name is resolved again when a connection closes (servers
    close them at ``VISEARCH_GRPC_MAX_CONNECTION_AGE_S``, or a keepalive ping goes unanswered), at most every
    ``VISEARCH_GRPC_DNS_MIN_RERESOLVE_S``, so new pods receive calls and gone ones none.

    TLS when ``tls_ca_file`` or ``client_tls`` is set (presenting ``tls_client_cert_file`` for mutual TLS;
    ``tls_server_name`` overrides the name checked in the server certificate, which is else the target's host,
    e.g. the headless Service's name), else plaintext. Every call carries ``authorization: Bearer
    <client_token>`` when a client token is set (a call's own ``authorization`` metadata wins), has a deadline
    (``timeout_s``, default ``client_timeout_s``, when the caller gives none) and is limited to
    ``max_message_bytes`` each way (default ``VISEARCH_GRPC_MAX_MESSAGE_BYTES``). Use it as a context manager or
    ``close()`` it.

    Args:
        address: gRPC target of the server(s).
        settings: security settings; None reads ``VISEARCH_SECURITY_*``.
        max_message_bytes: largest message sent or received, bytes.
        timeout_s: default deadline of a call, seconds.
        lb_policy: ``round_robin`` or ``pick_first`` (one address at a time); None reads ``VISEARCH_GRPC_LB_POLICY``.

    Raises:
        OSError: a configured certificate or key file cannot be read.
        ConfigError: TLS to a static list of several hosts without ``tls_server_name``.
    """
    settings = settings or SecuritySettings()
    options = channel_options(
        address, settings, ServiceSettings(), max_message_bytes=max_message_bytes, lb_policy=lb_policy
    )
    credentials = channel_credentials(settings)
    token = settings.client_token.get_secret_value()
    if credentials is not None:
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
        if token and not all(is_loopback(host) for host in target_hosts(address)):
            log.warning(
                "token_over_plaintext",
                target=address,
                hint="set VISEARCH_SECURITY_TLS_CA_FILE or VISEARCH_SECURITY_CLIENT_TLS for TLS",
            )
    metadata = [(AUTH_METADATA_KEY, f"Bearer {token}")] if token else []
    return grpc.intercept_channel(channel, ClientDefaults(timeout_s or settings.client_timeout_s, metadata))


def server_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    """A server's channel arguments: message size limits; keepalive pings accepted from clients every
    :data:`GRPC_MIN_PING_INTERVAL_S`, idle connections included (what :func:`client_channel` sends); and the
    maximum connection age: each connection is closed (GOAWAY) after ``grpc_max_connection_age_s`` (gRPC adds
    +-10 % jitter) with ``grpc_max_connection_age_grace_s`` for calls in flight, so a client re-resolves its
    target and balances over pods started since it connected."""
    options = [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", round(GRPC_MIN_PING_INTERVAL_S * 1000)),
    ]
    if settings.grpc_max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", round(settings.grpc_max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", round(settings.grpc_max_connection_age_grace_s * 1000)),
        ]
    return options


def serve(
    service_name: str,
    register: Callable[[grpc.Server], list[str]],
    settings: ServiceSettings,
    workers: tuple[Callable[[threading.Event], None], ...] = (),
    stop_event: threading.Event | None = None,
    ready: Callable[[int], None] | None = None,
    security: SecuritySettings | None = None,
) -> int:
    """Run a gRPC server (health checking, reflection) and background workers until SIGTERM/SIGINT.

    The server accepts messages up to ``grpc_max_message_bytes`` each way (larger ones fail with
    RESOURCE_EXHAUSTED), listens with TLS / mutual TLS when ``security`` configures a certificate (else
    plaintext, with a warning unless the address is loopback) and authenticates / rate-limits calls
    per ``security`` (:mod:`visearch.shared.security`; health and reflection stay open).

    On stop: health turns NOT_SERVING, workers finish their batch in flight and commit (within
    ``worker_drain_s``; a batch not committed by then is redelivered by Kafka), then the server drains its calls
    (``grpc_drain_s``). A worker that fails stops the whole process.

    Args:
        register: adds the servicers to the server and returns their full service names.
        workers: callables ``run(stop_event)``, each run in its own thread (e.g. a Kafka stage worker).
        ready: called with the bound port once serving (useful when ``grpc_port`` is 0).
        security: TLS, auth and rate-limit settings; None reads ``VISEARCH_SECURITY_*``.

    Returns:
        the process exit code: 0 after a clean stop, 1 when a worker failed.

    Raises:
        OSError: a configured certificate, key or tokens file cannot be read.
        ValueError: a tokens file is malformed.
    """
    from concurrent import futures

    security = security or SecuritySettings()
    options = server_options(settings)
    interceptors = server_interceptors(security)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options, interceptors=interceptors)
    names = register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    credentials = server_credentials(security)
    bind = f"{settings.grpc_host}:{settings.grpc_port}"
    if credentials is not None:
        port = server.add_secure_port(bind, credentials)
    else:
        port = server.add_insecure_port(bind)
        if not is_loopback(settings.grpc_host):
            log.warning(
                "plaintext_grpc",
                service=service_name,
                address=bind,
                hint="set VISEARCH_SECURITY_TLS_CERT_FILE and VISEARCH_SECURITY_TLS_KEY_FILE for TLS",
            )
    server.start()
    stop_event = stop_event or threading.Event()
    failures: list[BaseException] = []

    def guard(run: Callable[[threading.Event], None]) -> None:
        try:
            run(stop_event)
        except BaseException as exc:  # noqa: BLE001 (reported, then the process stops)
            failures.append(exc)
            log.exception("worker_failed", service=service_name, error=str(exc))
            stop_event.set()

    threads = [
        threading.Thread(target=guard, args=(w,), name=f"{service_name}-worker-{i}") for i, w in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving",
        service=service_name,
        address=f"{settings.grpc_host}:{port}",
        services=names,
        workers=len(threads),
        tls=security.tls_enabled,
        mtls=security.mtls_enabled,
        auth_or_rate_limit=bool(interceptors),
        max_message_bytes=settings.grpc_max_message_bytes,
    )
    if ready:
        ready(port)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop_event.set())
    stop_event.wait()
    health_servicer.enter_graceful_shutdown()
    deadline = time.monotonic() + settings.worker_drain_s
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0.0))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:  # a batch still in flight is not committed: Kafka redelivers it to the next consumer
        log.warning("worker_drain_timeout", service=service_name, workers=stuck, drain_s=settings.worker_drain_s)
    server.stop(grace=settings.grpc_drain_s).wait()
    log.info("stopped", service=service_name, failed_workers=len(failures))
    return 1 if failures else 0


def run_service(
    service_name: str,
    settings: ServiceSettings,
    servicer: _ServicerT,
    add_to_server: Callable[[_ServicerT, grpc.Server], None],
    full_name: str,
    stage: Stage | None = None,
    **serve_kwargs: Any,
) -> int:
    """The common main of a model service: its ``/metrics`` endpoint, a gRPC server (health, reflection) and,
    per ``settings.service_role`` (``VISEARCH_SERVICE_ROLE``):

    - ``all``: its servicer, and, when Kafka is configured and ``stage`` is in the chain, its stage worker;
    - ``grpc``: its servicer only (query serving, in Deployments apart from the ingest backlog);
    - ``worker``: the stage worker only; the gRPC server answers health checks (probes) and nothing else.

    Args:
        servicer: the gRPC servicer; ``add_to_server``: the generated ``add_*Servicer_to_server``.
        full_name: the servicer's full service name (health status, reflection).
        stage: the service's pipeline stage, or None for a service that is not one.

    Returns:
        the process exit code (see :func:`serve`).

    Raises:
        ConfigError: role ``worker`` with no worker to run (no stage, no ``VISEARCH_KAFKA_BOOTSTRAP``, or the stage
            not in ``VISEARCH_PIPELINE_STAGES``).
    """
    from visearch.shared.metrics import start_metrics_server
    from visearch.shared.pipeline import kafka_workers

    role = settings.service_role
    workers = kafka_workers(stage) if stage is not None and role != "grpc" else ()
    if role == "worker" and not workers:
        raise errors.ConfigError(
            f"VISEARCH_SERVICE_ROLE=worker: {service_name} has no stage worker to run (set VISEARCH_KAFKA_BOOTSTRAP "
            f"and list the stage in VISEARCH_PIPELINE_STAGES)"
        )
    start_metrics_server(settings.metrics_port, settings.grpc_host)
    log.info("service_role", service=service_name, role=role, grpc_api=role != "worker", stage_workers=len(workers))

    def register(server: grpc.Server) -> list[str]:
        if role == "worker":
            return []
        add_to_server(servicer, server)
        return [full_name]

    return serve(service_name, register, settings, workers=workers, **serve_kwargs)
