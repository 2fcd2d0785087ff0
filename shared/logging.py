"""structlog JSON logging: one event per line, with ``service`` bound and ``image_id``/``trace_id`` where known.

Log durations as ``*_ms`` fields. Never log image bytes or secrets.
"""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


def configure_logging(service: str = "visearch", level: str = "info", stream=None) -> None:
    """Configure structlog for JSON lines on ``stream`` (default stderr, so stdout stays for CLI output).

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
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    _configured = True


def get_logger(name: str):
    """A structlog logger with ``logger=name`` bound; configures defaults on first use."""
    if not _configured:
        configure_logging()
    return structlog.get_logger().bind(logger=name)
