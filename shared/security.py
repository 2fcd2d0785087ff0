"""API security for the gRPC servers and clients: TLS / mutual TLS, bearer-token auth, per-client rate limits.

Everything is configured by :class:`~visearch.shared.config.SecuritySettings` (``VISEARCH_SECURITY_*``) and
is off by default. :func:`visearch.shared.grpcutil.serve` installs the server side on every service and
:func:`visearch.shared.grpcutil.client_channel` the client side on every call one service makes to another.

- TLS: :func:`server_credentials` (certificate and key re-read when the files change, e.g. by cert-manager;
  with a client CA, client certificates are required and verified) and :func:`channel_credentials`.
- Auth: :class:`SecurityInterceptor` refuses calls to the protected services (the public SearchService by
  default) that do not carry ``authorization: Bearer <token>`` metadata with one of the configured tokens
  (compared in constant time, several tokens at once for rotation) with UNAUTHENTICATED. Health checks
  and reflection stay open.
- Rate limits: a token bucket per client (the token's id, else the client certificate's common name,
  else the peer IP); a call over the limit gets RESOURCE_EXHAUSTED, a message saying when to retry and
  ``retry-after-ms`` trailing metadata.

Refused calls are counted in ``visearch_grpc_rejected_total{grpc_service, reason}``; tokens never reach
a log line (they are registered with :func:`visearch.shared.logging.register_secret`).
"""

from __future__ import annotations

import collections
import hashlib
import ipaddress
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import Counter

from visearch.shared.config import SecuritySettings
from visearch.shared.logging import get_logger, register_secret

log = get_logger("security")

if TYPE_CHECKING:
    # grpc-stubs declares the interceptor classes generic; grpc's run-time classes cannot be subscripted.
    _ServerInterceptor = grpc.ServerInterceptor[Any, Any]
    _UnaryUnaryClientInterceptor = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStreamClientInterceptor = grpc.UnaryStreamClientInterceptor[Any, Any]
    _StreamUnaryClientInterceptor = grpc.StreamUnaryClientInterceptor[Any, Any]
    _StreamStreamClientInterceptor = grpc.StreamStreamClientInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.ServerInterceptor
    _UnaryUnaryClientInterceptor = grpc.UnaryUnaryClientInterceptor
    _UnaryStreamClientInterceptor = grpc.UnaryStreamClientInterceptor
    _StreamUnaryClientInterceptor = grpc.StreamUnaryClientInterceptor
    _StreamStreamClientInterceptor = grpc.StreamStreamClientInterceptor

AUTH_METADATA_KEY = "authorization"
RETRY_AFTER_KEY = "retry-after-ms"
#: Services that never require a token and are never rate-limited (probes and tooling must reach them).
OPEN_SERVICES = frozenset(
    {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)
MIN_TOKEN_LENGTH = 16
_TOKEN_FILE_CHECK_S = 1.0  # how often the tokens file's mtime is looked at, at most
_LOG_EVERY_S = 10.0  # a refusal is logged at most once per this many seconds per (client, reason)

REJECTED = Counter(
    "visearch_grpc_rejected_total",
    "gRPC calls refused before reaching the servicer, by service and reason (missing_token, invalid_token, rate_limited).",
    ["grpc_service", "reason"],
)


# --------------------------------------------------------------------------------------------- tokens


def token_id(token: str) -> str:
    """The id of a token given without one: ``token-`` and the first 8 hex digits of its SHA-256."""
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:8]


def parse_tokens(text: str) -> dict[str, str]:
    """Parse ``id:token`` entries separated by commas or newlines into ``{id: token}``.

    An entry without ``id:`` is named by :func:`token_id`; blank entries and ``#`` comment lines are skipped.

    Raises:
        ValueError: a token shorter than 16 characters, containing whitespace, or an id given twice (the
            message names the id, never the token).
    """
    tokens: dict[str, str] = {}
    for line in text.replace(",", "\n").splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        ident, sep, token = entry.partition(":")
        if not sep:
            ident, token = token_id(entry), entry
        ident, token = ident.strip(), token.strip()
        if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise ValueError(f"auth token {ident!r} must be at least {MIN_TOKEN_LENGTH} characters without whitespace")
        if not ident:
            raise ValueError("auth token entry with an empty id before ':'")
        if ident in tokens:
            raise ValueError(f"auth token id {ident!r} given twice")
        tokens[ident] = token
    return tokens


class TokenSet:
    """The accepted tokens: ``auth_tokens`` plus the entries of ``auth_tokens_file``, which is re-read
    (at most once a second) when its modification time changes; a file that cannot be read or parsed
    keeps the previous tokens and logs a warning.

    Args:
        inline: ``id:token`` entries (see :func:`parse_tokens`).
        path: the tokens file, or None.
        clock: monotonic clock in seconds (tests inject one).

    Raises:
        ValueError: malformed inline entries, or a tokens file that is malformed at start-up.
        OSError: the tokens file cannot be read at start-up.
    """

    def __init__(self, inline: str = "", path: Path | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._inline = parse_tokens(inline)
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._file_tokens: dict[str, str] = {}
        self._mtime: float | None = None
        self._checked = -float("inf")
        if path is not None:
            self._reload(initial=True)
        self._rebuild()

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> TokenSet:
        """The token set of ``settings`` (``auth_tokens`` and ``auth_tokens_file``)."""
        return cls(settings.auth_tokens.get_secret_value(), settings.auth_tokens_file)

    def _rebuild(self) -> None:
        merged = {**self._file_tokens, **self._inline}
        for token in merged.values():
            register_secret(token)
        self._entries = [(ident, token.encode()) for ident, token in merged.items()]

    def _reload(self, initial: bool = False) -> None:
        assert self._path is not None
        try:
            mtime = os.stat(self._path).st_mtime_ns
            if mtime == self._mtime:
                return
            tokens = parse_tokens(self._path.read_text())
        except (OSError, ValueError) as exc:
            if initial:
                raise
            log.warning("auth_tokens_file_unreadable", path=str(self._path), error=type(exc).__name__)
            return
        self._file_tokens, self._mtime = tokens, mtime
        if not initial:
            log.info("auth_tokens_reloaded", path=str(self._path), tokens=len(tokens))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (a tokens file that is empty now may gain some later)."""
        return bool(self._entries) or self._path is not None

    def match(self, presented: str) -> str | None:
        """The id of the token equal to ``presented``, or None.

        Every configured token is compared with :func:`secrets.compare_digest` (no early exit), so the
        time taken does not depend on which token, or how much of one, matched.
        """
        if self._path is not None and self._clock() - self._checked >= _TOKEN_FILE_CHECK_S:
            with self._lock:
                if self._clock() - self._checked >= _TOKEN_FILE_CHECK_S:
                    self._checked = self._clock()
                    before = self._mtime
                    self._reload()
                    if self._mtime != before:
                        self._rebuild()
        candidate = presented.encode()
        found = None
        for ident, token in self._entries:
            if secrets.compare_digest(candidate, token) and found is None:
                found = ident
        return found


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the first ``authorization: Bearer <token>`` entry of gRPC ``metadata`` (scheme
    case-insensitive), or None when there is none or it is not a bearer credential."""
    for key, value in metadata or ():
        if key.lower() == AUTH_METADATA_KEY:
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


@dataclass(frozen=True)
class AuthDecision:
    """The outcome of :func:`authenticate`: ``client_id`` when accepted, else ``reason`` (missing_token,
    invalid_token) and a message safe to return to the caller."""

    client_id: str | None
    reason: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether the call is authenticated."""
        return self.client_id is not None


def authenticate(metadata: Iterable[tuple[str, str | bytes]] | None, tokens: TokenSet) -> AuthDecision:
    """Decide whether a call's ``metadata`` carries one of ``tokens`` as a bearer token.

    Returns:
        an accepted decision naming the token's id, or a refusal (missing_token: no ``authorization:
        Bearer`` entry; invalid_token: a token that is not configured).
    """
    token = bearer_token(metadata)
    if token is None:
        return AuthDecision(None, "missing_token", "missing credentials: send 'authorization: Bearer <token>' metadata")
    ident = tokens.match(token)
    if ident is None:
        return AuthDecision(None, "invalid_token", "invalid token")
    return AuthDecision(ident)


# --------------------------------------------------------------------------------------------- rate limits


class TokenBucket:
    """A token bucket: holds up to ``burst`` tokens, refilled at ``rate`` tokens per second; each allowed
    request takes one. Not thread-safe on its own (:class:`RateLimiter` locks).

    Args:
        rate: refill rate, tokens per second (> 0).
        burst: capacity, tokens (>= 1); the bucket starts full.
        now: the current time, seconds on ``clock``'s scale.

    Raises:
        ValueError: rate <= 0 or burst < 1.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate, self.burst, self.tokens, self.stamp = float(rate), float(burst), float(burst), now

    def take(self, now: float) -> float:
        """Take one token at time ``now`` (seconds). Returns 0.0 when allowed, else the seconds until a
        token will be available (nothing is taken)."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Token buckets per client key, thread-safe, tracking at most ``max_clients`` keys (the least
    recently seen are forgotten, i.e. start again with a full bucket).

    Args:
        rate: requests per second per client (> 0); burst: bucket size (>= 1).
        max_clients: most keys kept (>= 1).
        clock: monotonic clock in seconds (tests inject one).
    """

    def __init__(
        self, rate: float, burst: int, max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        TokenBucket(rate, burst, 0.0)  # validates
        self.rate, self.burst, self.max_clients = rate, burst, max(1, max_clients)
        self._clock = clock
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> RateLimiter | None:
        """The limiter of ``settings``, or None when ``rate_limit_per_s`` is 0."""
        if settings.rate_limit_per_s <= 0:
            return None
        return cls(settings.rate_limit_per_s, settings.rate_limit_burst, settings.rate_limit_max_clients)

    def check(self, key: str) -> float:
        """Count a request of client ``key``. Returns 0.0 when allowed, else seconds until it would be."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
                if len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
            return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


# --------------------------------------------------------------------------------------------- server side


def service_of(method: str) -> str:
    """The full service name of a gRPC method path: ``/visearch.v1.SearchService/Search`` ->
    ``visearch.v1.SearchService``."""
    return method.lstrip("/").split("/", 1)[0]


def _service_set(text: str) -> frozenset[str] | None:
    """Parsed ``*_services`` setting: None means every service (``*``)."""
    names = frozenset(s.strip() for s in text.split(",") if s.strip())
    return None if "*" in names else names


def _applies(services: frozenset[str] | None, service: str) -> bool:
    return service not in OPEN_SERVICES and (services is None or service in services)


def covers(setting: str, service: str) -> bool:
    """Whether a ``*_services`` setting (comma-separated full service names, ``*`` for all) applies to
    ``service``; never to the open ones (health, reflection)."""
    return _applies(_service_set(setting), service)


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string (``ipv4:10.0.0.7:5123`` -> ``10.0.0.7``, ``ipv6:[::1]:5123`` ->
    ``::1``, ``unix:/path`` -> ``unix:/path``); the port is dropped so one client's connections share a key."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        host = rest.rsplit(":", 1)[0] if rest.startswith("[") else rest
        return host.strip("[]")
    return peer


def client_identity(context: grpc.ServicerContext, auth_id: str | None) -> str:
    """The key a call is rate-limited under: ``token:<id>`` when authenticated, else ``cert:<common name>``
    of a verified client certificate, else ``ip:<peer host>``."""
    if auth_id is not None:
        return f"token:{auth_id}"
    try:
        names = context.auth_context().get("x509_common_name")
    except Exception:  # noqa: BLE001 (no auth context on a plaintext call)
        names = None
    if names:
        name = names[0]
        return "cert:" + (name.decode(errors="replace") if isinstance(name, bytes) else str(name))
    return "ip:" + peer_host(context.peer() or "")


class SecurityInterceptor(_ServerInterceptor):
    """Server interceptor: authenticates calls to ``auth_services`` and rate-limits calls to
    ``rate_limit_services`` (per client), before the request reaches the servicer.

    Refusals abort the call with UNAUTHENTICATED (missing or invalid token) or RESOURCE_EXHAUSTED (over the
    rate limit, with ``retry-after-ms`` trailing metadata). Health checks and reflection are never touched.

    Args:
        tokens: accepted tokens, or None for no authentication.
        limiter: the rate limiter, or None for no limit.
        auth_services / limit_services: full service names, or None for every service.
    """

    def __init__(
        self,
        tokens: TokenSet | None,
        limiter: RateLimiter | None,
        auth_services: frozenset[str] | None = frozenset({"visearch.v1.SearchService"}),
        limit_services: frozenset[str] | None = frozenset({"visearch.v1.SearchService"}),
    ) -> None:
        self.tokens = tokens if tokens is not None and tokens.enabled else None
        self.limiter = limiter
        self.auth_services, self.limit_services = auth_services, limit_services
        self._logged: dict[tuple[str, str], float] = {}

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> SecurityInterceptor | None:
        """The interceptor ``settings`` ask for, or None when neither tokens nor a rate limit are set."""
        tokens = TokenSet.from_settings(settings)
        limiter = RateLimiter.from_settings(settings)
        if not tokens.enabled and limiter is None:
            return None
        return cls(tokens, limiter, _service_set(settings.auth_services), _service_set(settings.rate_limit_services))

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service = service_of(handler_call_details.method)
        tokens = self.tokens if _applies(self.auth_services, service) else None
        limiter = self.limiter if _applies(self.limit_services, service) else None
        if tokens is None and limiter is None:
            return handler
        metadata = handler_call_details.invocation_metadata
        method = handler_call_details.method

        def guard(context: grpc.ServicerContext) -> None:
            auth_id = None
            if tokens is not None:
                decision = authenticate(metadata, tokens)
                if not decision.ok:
                    self._refuse(context, service, method, decision.reason, "ip:" + peer_host(context.peer() or ""))
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, decision.message)
                auth_id = decision.client_id
            if limiter is not None:
                client = client_identity(context, auth_id)
                wait_s = limiter.check(client)
                if wait_s > 0:
                    self._refuse(context, service, method, "rate_limited", client)
                    context.set_trailing_metadata(((RETRY_AFTER_KEY, str(max(1, round(wait_s * 1000)))),))
                    context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"rate limit exceeded for client {client!r}: {limiter.rate:g} requests/s, "
                        f"burst {limiter.burst}; retry in {wait_s:.2f} s",
                    )

        return _guarded(handler, guard)

    def _refuse(self, context: grpc.ServicerContext, service: str, method: str, reason: str, client: str) -> None:
        REJECTED.labels(grpc_service=service, reason=reason).inc()
        now = time.monotonic()
        key = (client, reason)
        if now - self._logged.get(key, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            if len(self._logged) > 10_000:
                self._logged.clear()
            self._logged[key] = now
            log.warning(
                "rpc_refused", method=method, reason=reason, client=client, peer=peer_host(context.peer() or "")
            )


def _guarded(
    handler: grpc.RpcMethodHandler[Any, Any], guard: Callable[[grpc.ServicerContext], None]
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with ``guard(context)`` run before its behaviour (any of the four call shapes)."""
    kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    inner = handler.unary_unary
    if inner:

        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            guard(context)
            return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
    inner_us = handler.unary_stream
    if inner_us:

        def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            guard(context)
            yield from inner_us(request, context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    inner_su = handler.stream_unary
    if inner_su:

        def stream_unary(request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
            guard(context)
            return inner_su(request_iterator, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
    inner_ss = handler.stream_stream
    assert inner_ss is not None, "a method handler has one of the four behaviours"

    def stream_stream(request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        guard(context)
        yield from inner_ss(request_iterator, context)

    return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)


def server_interceptors(settings: SecuritySettings) -> list[grpc.ServerInterceptor[Any, Any]]:
    """The interceptors a server installs for ``settings``: [] when auth and rate limits are off."""
    interceptor = SecurityInterceptor.from_settings(settings)
    return [interceptor] if interceptor is not None else []


class _CertificateFiles:
    """Server certificate, key and client CA files; a new gRPC certificate configuration when they change."""

    def __init__(self, settings: SecuritySettings) -> None:
        assert settings.tls_cert_file is not None and settings.tls_key_file is not None
        self.paths = [settings.tls_cert_file, settings.tls_key_file]
        if settings.tls_client_ca_file is not None:
            self.paths.append(settings.tls_client_ca_file)
        self.stamps = self._stamps()

    def _stamps(self) -> tuple[int, ...]:
        return tuple(os.stat(p).st_mtime_ns for p in self.paths)

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key = (Path(p).read_bytes() for p in self.paths[:2])
        client_ca = Path(self.paths[2]).read_bytes() if len(self.paths) > 2 else None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each new handshake: a new configuration when a file changed, else None."""
        try:
            stamps = self._stamps()
            if stamps == self.stamps:
                return None
            config = self.configuration()
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("tls_reload_failed", error=type(exc).__name__)
            return None
        self.stamps = stamps
        log.info("tls_certificate_reloaded", files=[str(p) for p in self.paths])
        return config


def server_credentials(settings: SecuritySettings) -> grpc.ServerCredentials | None:
    """TLS credentials of a server, or None when ``tls_cert_file`` is not set (plaintext).

    With ``tls_client_ca_file`` (mutual TLS) the server requires a client certificate that chains to that
    CA. The files are re-read before a new handshake when their modification times change, so rotated
    certificates take effect without a restart (a bad new file keeps the old configuration).

    Raises:
        OSError: a file cannot be read at start-up.
    """
    if not settings.tls_enabled:
        return None
    files = _CertificateFiles(settings)
    return grpc.dynamic_ssl_server_credentials(
        files.configuration(),
        # grpc-stubs types the fetcher's result without None, which grpc documents as "no change".
        files.fetch,  # type: ignore[arg-type]
        require_client_authentication=settings.mtls_enabled,
    )


def channel_credentials(settings: SecuritySettings) -> grpc.ChannelCredentials | None:
    """TLS credentials of a client channel, or None when calls are plaintext (neither ``tls_ca_file`` nor
    ``client_tls``). Servers are verified with ``tls_ca_file`` (else the system roots); the client
    certificate (``tls_client_cert_file``/``tls_client_key_file``) is presented when set.

    Raises:
        OSError: a file cannot be read.
    """
    if not settings.client_tls_enabled:
        return None
    root = settings.tls_ca_file.read_bytes() if settings.tls_ca_file else None
    key = settings.tls_client_key_file.read_bytes() if settings.tls_client_key_file else None
    chain = settings.tls_client_cert_file.read_bytes() if settings.tls_client_cert_file else None
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP or name, IPv6 possibly in brackets) is a loopback address."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------- client side


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class ClientDefaults(
    _UnaryUnaryClientInterceptor,
    _UnaryStreamClientInterceptor,
    _StreamUnaryClientInterceptor,
    _StreamStreamClientInterceptor,
):
    """Client interceptor: gives every call a deadline (``timeout_s`` when the caller set none) and adds
    ``metadata`` entries whose keys the call does not already carry (e.g. the bearer token).

    Args:
        timeout_s: default deadline, seconds (> 0).
        metadata: ``(key, value)`` pairs, keys lower-case.
    """

    def __init__(self, timeout_s: float, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.timeout_s = timeout_s
        self.metadata = tuple(metadata)

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = list(details.metadata or ())
        present = {k for k, _ in metadata}
        metadata += [(k, v) for k, v in self.metadata if k not in present]
        timeout = details.timeout if details.timeout is not None else self.timeout_s
        return _CallDetails(
            details.method,
            timeout,
            metadata or None,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], grpc.CallFuture[Any]],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> grpc.CallFuture[Any]:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], grpc.CallIterator[Any]],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> grpc.CallIterator[Any]:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], grpc.CallFuture[Any]],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[Any],
    ) -> grpc.CallFuture[Any]:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], grpc.CallIterator[Any]],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[Any],
    ) -> grpc.CallIterator[Any]:
        return continuation(self._details(client_call_details), request_iterator)
