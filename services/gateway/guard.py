"""The gateway's ASGI middleware: bearer-token auth, per-client rate limits, request size limits, metrics.

The rules are the gRPC API's (:mod:`visearch.shared.security`, ``VISEARCH_SECURITY_*``): the same tokens (the
``Authorization: Bearer <token>`` header instead of metadata), the same token buckets per client (token id,
else client IP), refusals counted in ``visearch_grpc_rejected_total`` under ``grpc_service="http"``. They apply
to the API (``/v1/...``) when the tokens / limits cover ``visearch.v1.SearchService``; ``/healthz``,
``/readyz``, ``/metrics``, ``/docs`` and the playground's static files stay open (the playground sends the
token the user types with every API call).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import Counter, Histogram

from visearch.services.gateway.errors import HttpError
from visearch.shared.config import SecuritySettings
from visearch.shared.security import REJECTED, RateLimiter, TokenSet, authenticate, covers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

API_PREFIX = "/v1/"
SEARCH_SERVICE = "visearch.v1.SearchService"

HTTP_REQUESTS = Counter(
    "visearch_http_requests_total", "HTTP requests the gateway answered, by route and status.", ["route", "status"]
)
HTTP_SECONDS = Histogram(
    "visearch_http_request_seconds",
    "Time the gateway took to answer an HTTP request (gRPC calls included), by route, seconds.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


class Guard:
    """ASGI middleware around the FastAPI app (see the module's docstring).

    Args:
        app: the wrapped ASGI app.
        security: tokens and rate limits (``VISEARCH_SECURITY_*``).
        max_body_bytes: largest request body of an API call, bytes; a larger one is refused with 413
            (``image_too_large`` on upload routes, ``request_too_large`` elsewhere) before it is read, or as soon
            as the bytes read pass the limit when no Content-Length is sent.
        tokens / limiter: override the ones ``security`` builds (tests).
    """

    def __init__(
        self,
        app: App,
        security: SecuritySettings,
        max_body_bytes: int,
        tokens: TokenSet | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        tokens = tokens or TokenSet.from_settings(security)
        self.tokens = tokens if tokens.enabled and covers(security.auth_services, SEARCH_SERVICE) else None
        limiter = limiter or RateLimiter.from_settings(security)
        self.limiter = limiter if covers(security.rate_limit_services, SEARCH_SERVICE) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self._check(scope) if scope["path"].startswith(API_PREFIX) else None
            if refusal is not None:
                await _respond(tracked_send, refusal)
            else:
                await self._run(scope, receive, tracked_send)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "other") if route is not None else "other"
            HTTP_REQUESTS.labels(route=label, status=str(status[0])).inc()
            HTTP_SECONDS.labels(route=label).observe(time.perf_counter() - start)

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        too_large = self._too_large(scope)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _respond(send, too_large)
            return
        seen = [0]
        started = [False]

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body_bytes:
                    raise too_large  # answered by the app's HttpError handler
            return message

        async def started_send(message: Message) -> None:
            started[0] = started[0] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, started_send)
        except HttpError as exc:  # raised outside a handler: answer it here if nothing was sent
            if not started[0]:
                await _respond(send, exc)

    def _too_large(self, scope: Scope) -> HttpError:
        reason = "image_too_large" if scope["path"].endswith("/upload") else "request_too_large"
        return HttpError(
            413, "INVALID_ARGUMENT", reason, f"request body larger than {self.max_body_bytes} bytes ({reason})"
        )

    def _check(self, scope: Scope) -> HttpError | None:
        """Auth, then the rate limit, for one API request; the refusal to answer, or None."""
        headers = dict(scope.get("headers") or [])
        client = "ip:" + ((scope.get("client") or ("unknown", 0))[0])
        if self.tokens is not None:
            value = headers.get(b"authorization", b"").decode("latin-1")
            decision = authenticate([("authorization", value)] if value else [], self.tokens)
            if not decision.ok:
                REJECTED.labels(grpc_service="http", reason=decision.reason).inc()
                return HttpError(
                    401, "UNAUTHENTICATED", decision.reason, decision.message, {"WWW-Authenticate": "Bearer"}
                )
            client = str(decision.client_id)
        if self.limiter is not None:
            wait_s = self.limiter.check(client)
            if wait_s > 0:
                REJECTED.labels(grpc_service="http", reason="rate_limited").inc()
                return HttpError(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "rate_limited",
                    f"rate limit exceeded for client {client!r}: {self.limiter.rate:g} requests/s, burst "
                    f"{self.limiter.burst}; retry in {wait_s:.2f} s",
                    {"Retry-After": str(max(1, -(-int(wait_s * 1000) // 1000)))},
                )
        return None


async def _respond(send: Send, error: HttpError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
