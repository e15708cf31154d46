"""Logging that works wherever the stack runs: plain uvicorn, gunicorn workers, ``bastion serve``.

Why: bastion's layers log to the ``bastion.*`` loggers (``bastion.access`` one line per request,
``bastion.error`` the redacted tracebacks, ``bastion.ratelimit`` store outages). A process that
never configures :mod:`logging` — ``uvicorn app:asgi``, gunicorn with uvicorn workers — has no
handler on the root logger, so Python drops INFO records and prints warnings through its
plain-text "last resort". Two pieces fix that without fighting the application:

* :func:`ensure_handler`, called by :func:`bastion.secure`: when the ``bastion`` logger has no
  level it gets INFO, and it gets one :class:`FallbackHandler` writing to stderr. That handler
  writes a record only when *no other handler* on the record's way up would (a root handler
  from ``logging.basicConfig``, ``dictConfig``, gunicorn's ``--log-config``...), decided per
  record: configuring logging before or after the app is built never yields a line twice.
* :class:`JSONFormatter`: one JSON object per line. bastion's own lines are already JSON
  (they carry ``timestamp`` and ``level`` themselves, so they stay self-describing under any
  formatter) and pass through unchanged; any other record (uvicorn's "Started server process",
  a library warning) becomes ``{"timestamp","level","logger","message"}``, its traceback
  redacted. ``bastion serve`` installs it on the root logger, so uvicorn's lifecycle lines
  share the format; under plain uvicorn, :data:`UVICORN_LOG_CONFIG` does the same for
  ``uvicorn.run(..., log_config=...)``.

Timestamps are RFC 3339 in UTC with milliseconds (``2025-06-01T12:00:00.123Z``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any, TextIO

from bastion.redaction import log_line, redact

__all__ = [
    "BASTION_LOGGER",
    "JSON_RECORD",
    "UVICORN_LOG_CONFIG",
    "FallbackHandler",
    "JSONFormatter",
    "configure",
    "ensure_handler",
    "level_name",
    "timestamp",
]

BASTION_LOGGER = "bastion"
#: ``extra=`` flag of records whose message is already one JSON object (written as is).
JSON_RECORD = "bastion_json"

_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}

_second = -1
_prefix = ""
_last_milli = -1
_last_text = ""
_LOGGERS = logging.Logger.manager.loggerDict


def timestamp(now: float | None = None) -> str:
    """RFC 3339 UTC time with milliseconds; formatted once per millisecond (a busy server
    writes several lines in one), the date part once per second."""
    global _second, _prefix, _last_milli, _last_text
    if now is None:
        now = time.time()
    milli = int(now * 1000)
    if milli == _last_milli:
        return _last_text
    second = milli // 1000
    if second != _second:
        _prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    _last_text = "%s.%03dZ" % (_prefix, milli - second * 1000)  # noqa: UP031
    _last_milli = milli
    return _last_text


def level_name(level: int) -> str:
    """``info``, ``warning``...: the ``level`` field of every JSON line."""
    name = _LEVEL_NAMES.get(level)
    return name if name is not None else logging.getLevelName(level).lower()


class JSONFormatter(logging.Formatter):
    """One JSON object per line; bastion's own (already JSON) lines pass through unchanged."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, JSON_RECORD, False):
            return str(record.msg)
        fields: dict[str, object] = {
            "timestamp": timestamp(record.created),
            "level": level_name(record.levelno),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info and record.exc_info[1] is not None:
            fields["exception"] = type(record.exc_info[1]).__name__
            fields["traceback"] = redact("".join(traceback.format_exception(record.exc_info[1])))
        return log_line(fields)


class FallbackHandler(logging.StreamHandler[TextIO]):
    """Writes a record only when no other handler would: the stderr of an unconfigured process.

    Attached to the ``bastion`` logger. For each record it walks the loggers from the record's
    own up to the root, as :meth:`logging.Logger.callHandlers` does; if any of them holds
    another handler (and the walk is not cut by ``propagate=False`` before it), that handler
    writes the record and this one stays silent.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JSONFormatter())

    @property
    def stream(self) -> TextIO:
        # Looked up per record, not kept: pytest, gunicorn and daemonisers swap sys.stderr.
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass

    def handle(self, record: logging.LogRecord) -> Any:
        # The logger that made the record exists: a dict lookup, without getLogger's lock.
        found = _LOGGERS.get(record.name)
        logger: logging.Logger | None = (
            found if isinstance(found, logging.Logger) else logging.getLogger(record.name)
        )
        while logger is not None:
            for handler in logger.handlers:
                if handler is not self:
                    return False
            if not logger.propagate:
                break
            logger = logger.parent
        return super().handle(record)


def ensure_handler() -> None:
    """Make ``bastion.*`` lines visible in a process that did not configure logging.

    Idempotent. The ``bastion`` logger gets level INFO when it has none (an explicit level
    set by the application is kept: ``WARNING`` there silences the access log) and one
    :class:`FallbackHandler`.
    """
    logger = logging.getLogger(BASTION_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not any(isinstance(h, FallbackHandler) for h in logger.handlers):
        logger.addHandler(FallbackHandler())


def configure(level: str | int = "info", stream: TextIO | None = None) -> None:
    """Root logging in bastion's JSON format, for a process bastion runs (``bastion serve``).

    Every logger — uvicorn's lifecycle lines included — then writes one JSON object per line.
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter())
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
    # The level is bastion's too: ensure_handler() (run later, by secure()) raises an unset
    # ``bastion`` logger to INFO, which would write the access log under BASTION_LOG_LEVEL=warning.
    logging.getLogger(BASTION_LOGGER).setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.error").setLevel(max(numeric, logging.WARNING))


#: For ``uvicorn.run(app, log_config=UVICORN_LOG_CONFIG)`` (or ``--log-config`` with this
#: dict saved as JSON): uvicorn's own lines in bastion's JSON format, its access log off
#: (bastion's replaces it).
UVICORN_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "bastion.log.JSONFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "uvicorn": {"level": "INFO"},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"level": "WARNING", "propagate": False},
    },
}


def dump_uvicorn_config() -> str:
    """:data:`UVICORN_LOG_CONFIG` as JSON text (``python -m bastion.log > log.json``)."""
    return json.dumps(UVICORN_LOG_CONFIG, indent=2)


if __name__ == "__main__":  # pragma: no cover - a convenience for --log-config
    print(dump_uvicorn_config())
