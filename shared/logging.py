"""structlog JSON logging: one event per line, with ``service`` bound and ``image_id``/``trace_id`` where known.

Log durations as ``*_ms`` fields. Never log image bytes or secrets: :func:`redact` runs on every event
before it is rendered and replaces what slips through anyway (bytes values, secret-named fields, bearer
tokens, registered secret values, credentials in URLs); tracebacks are rendered without frame locals.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import FilteringBoundLogger

_configured = False

REDACTED = "[REDACTED]"
# Field names whose string values are secrets (matched anywhere in the name, case-insensitively).
_SECRET_KEY = re.compile(
    r"authori[sz]ation|token|passw(or)?d|passwd|secret|api[_-]?key|private[_-]?key|cookie|credential", re.IGNORECASE
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=:-]+")
_URL_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@")
# A Python repr of a bytes value longer than a few bytes (e.g. a request printed into an error message).
_BYTES_REPR = re.compile(r"""(?<![A-Za-z0-9_])b(?:'(?:\\.|[^\\'\n]){24,}'|"(?:\\.|[^\\"\n]){24,}")""")
_MAX_DEPTH = 8
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Add a secret value (e.g. an auth token) that :func:`redact` removes wherever it appears in a log line.

    Values shorter than 8 characters are ignored (they would redact ordinary words); empty values too.
    """
    if value and len(value) >= 8:
        with _secrets_lock:
            _secrets.add(value)


def _redact_string(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return _BYTES_REPR.sub("<bytes>", text)


def _redact_value(value: Any, secret: bool, depth: int) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value) if not isinstance(value, memoryview) else value.nbytes} bytes>"
    if isinstance(value, str):
        return REDACTED if secret and value else _redact_string(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= _MAX_DEPTH:
        return f"<{type(value).__name__}>"
    if isinstance(value, dict):
        return {
            k: _redact_value(v, secret or (isinstance(k, str) and bool(_SECRET_KEY.search(k))), depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if len(items) == 2 and isinstance(items[0], str) and _SECRET_KEY.search(items[0]):
            return (items[0], _redact_value(items[1], True, depth + 1))  # a (key, value) metadata pair
        return [_redact_value(v, secret, depth + 1) for v in items]
    if _is_protobuf(value):
        return f"<{value.DESCRIPTOR.full_name}: {value.ByteSize()} bytes>"
    if secret:
        return REDACTED
    if type(value).__name__ in ("SecretStr", "SecretBytes"):
        return str(value)  # pydantic masks these itself ('**********')
    return value


def _is_protobuf(value: Any) -> bool:
    try:
        from google.protobuf.message import Message
    except ImportError:  # pragma: no cover (protobuf is a dependency)
        return False
    return isinstance(value, Message)


def redact(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:  # noqa: ARG001 (processor API)
    """structlog processor: make an event safe to write.

    - bytes, bytearray and memoryview values become ``"<N bytes>"`` (image bytes never reach a log line);
      protobuf messages become ``"<type: N bytes>"``;
    - string values of fields whose name looks secret (authorization, token, password, secret, api_key,
      private_key, cookie, credential; also nested dicts and ``(key, value)`` metadata pairs) become
      ``"[REDACTED]"`` (numbers and booleans, e.g. token counts, are kept);
    - in every other string: registered secrets (:func:`register_secret`), ``Bearer``/``Basic`` credentials,
      ``user:password@`` in URLs and long ``b'...'`` reprs are replaced.

    Args:
        event_dict: the event's fields; a new dict is returned (the input is not changed).

    Returns:
        the redacted event dict.
    """
    return {key: _redact_value(value, bool(_SECRET_KEY.search(key)), 0) for key, value in event_dict.items()}


def configure_logging(service: str = "visearch", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog for JSON lines on ``stream`` (default stderr, so stdout stays for CLI output).

    Every event passes :func:`redact` last before rendering; exception tracebacks are rendered without
    frame locals (they could hold image bytes or tokens).

    Args:
        service: value of the ``service`` field on every event.
        level: minimum level name (debug, info, warning, error).
    """
    global _configured
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            redact,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # Without an explicit stream, sys.stderr is looked up per event, not bound here: a test runner or
        # CLI harness that swaps (and later closes) sys.stderr must not leave loggers writing to a dead file.
        logger_factory=structlog.PrintLoggerFactory(stream)
        if stream
        else (lambda *_: structlog.PrintLogger(sys.stderr)),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    _configured = True


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger with ``logger=name`` bound; configures defaults on first use.

    The logger is a lazy proxy: it follows a later :func:`configure_logging` (a module-level logger made
    while the CLI's configuration was active still logs at the service's level, through the service's
    processors).
    """
    if not _configured:
        configure_logging()
    return cast(FilteringBoundLogger, _LazyLogger(name))  # a proxy of the configured (filtering) bound logger


class _LazyLogger:
    """Binds ``logger=name`` on the current configuration at each call (structlog's ``bind`` is eager)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(structlog.get_logger().bind(logger=self._name), attr)
