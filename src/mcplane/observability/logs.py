"""Structured logs: one event per call and per lifecycle step; JSON lines, or text on a terminal.

Every record of the process goes through one handler on the root logger, on stderr (stdout is
the protocol stream under stdio). Events carry their fields in the record (``extra``), so
the JSON formatter writes them as keys of the line::

    {"time": "2026-11-24T12:00:00.123Z", "level": "info", "logger": "mcplane.calls", "event": "call",
     "kind": "tool", "name": "add", "subject": "anonymous", "tenant": null, "duration_ms": 0.412,
     "status": "ok", "code": null, "trace_id": "4bf9...", "correlation_id": "9f1c..."}

    {"time": "...", "level": "info", "logger": "mcplane.lifecycle", "event": "draining",
     "transport": "http", "pid": 4242, "in_flight": 3, "grace_s": 30.0}

Records other than events (warnings, crashes) have ``message`` and, with a traceback,
``exception``. Secret values are masked: messages and tracebacks by the process-wide record
factory (:func:`mcplane.secrets.redact_all_logs`), event fields here, as they are written.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import IO, Any, Literal

import orjson

from mcplane import secrets

__all__ = [
    "CALL_LOGGER",
    "EVENT_KEY",
    "LIFECYCLE_LOGGER",
    "ClientFaultFilter",
    "JSONFormatter",
    "TextFormatter",
    "configure_logging",
    "install_server_log_filters",
    "lifecycle_event",
]

LogFormat = Literal["json", "text", "auto"]

EVENT_KEY = "mcplane_event"
"""The record attribute holding an event's fields (a dict)."""

CALL_LOGGER = logging.getLogger("mcplane.calls")
LIFECYCLE_LOGGER = logging.getLogger("mcplane.lifecycle")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_MAX_TEXT = 256


def _clean(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Event fields with string values capped and secret values masked."""
    redact = secrets.log_redactor()
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, str):
            value = value[:_MAX_TEXT]
            if redact is not None:
                value = redact(value)
        out[key] = value
    return out


_second: list[Any] = [None, ""]
"""The last whole second formatted, and its text: records come many to a second."""


def _timestamp(created: float) -> str:
    """UTC ISO 8601 with milliseconds: ``2026-11-24T12:00:00.123Z``."""
    whole = int(created)
    if _second[0] != whole:
        _second[0], _second[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{_second[1]}.{int((created - whole) * 1000):03d}Z"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, then the event's fields or ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        event = getattr(record, EVENT_KEY, None)
        if isinstance(event, Mapping):
            line.update(_clean(event))  # pyright: ignore[reportUnknownArgumentType]
        else:
            line["message"] = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """For a person at a terminal: ``12:00:00.123 INFO  call tool add ok 0.41ms subject=... cid=...``."""

    def format(self, record: logging.LogRecord) -> str:
        clock = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        event = getattr(record, EVENT_KEY, None)
        text = _describe(_clean(event)) if isinstance(event, Mapping) else record.getMessage()  # pyright: ignore[reportUnknownArgumentType]
        line = f"{clock} {record.levelname:<5} {record.name}: {text}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return line


def _describe(event: Mapping[str, Any]) -> str:
    if event.get("event") == "call":
        head = f"call {event.get('kind')} {event.get('name')} {event.get('status')}"
        if event.get("code"):
            head += f" {event['code']}"
        head += f" {event.get('duration_ms')}ms"
        rest = {k: v for k, v in event.items() if k not in {"event", "kind", "name", "status", "code", "duration_ms"}}
    else:
        head = str(event.get("event"))
        rest = {k: v for k, v in event.items() if k != "event"}
    pairs = " ".join(f"{key}={value}" for key, value in rest.items() if value not in (None, ""))
    return f"{head} {pairs}" if pairs else head


def _is_sdk_default(handler: logging.Handler) -> bool:
    """The handler the SDK's ``MCPServer`` installs with ``logging.basicConfig`` (rich, or a plain stream)."""
    formatter = handler.formatter
    plain = type(handler) is logging.StreamHandler and formatter is not None and formatter._fmt == "%(message)s"
    return plain or type(handler).__name__ == "RichHandler"


def configure_logging(
    level: str = "info", log_format: LogFormat = "auto", *, stream: IO[str] | None = None, force: bool = True
) -> logging.Handler | None:
    """Send every record to ``stream`` (stderr) as JSON lines or text; ``level`` is mcplane's loggers'.

    Other libraries' loggers stay at WARNING. ``auto`` writes text when the stream is a
    terminal and JSON otherwise. With ``force=False`` a root logger that already has handlers
    of the application's own is left alone (the SDK's default rich handler is replaced).
    Returns the installed handler, or ``None`` when nothing was changed.
    """
    root = logging.getLogger()
    if not force and any(not _is_sdk_default(handler) for handler in root.handlers):
        return None
    out = stream if stream is not None else sys.stderr
    if log_format == "auto":
        isatty = getattr(out, "isatty", None)
        log_format = "text" if callable(isatty) and isatty() else "json"
    handler = logging.StreamHandler(out)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("mcplane").setLevel(_LEVELS.get(level.lower(), logging.INFO))
    return handler


def lifecycle_event(event: str, **fields: Any) -> None:
    """Log one lifecycle step (``start``, ``ready``, ``draining``, ``stopped``, ...) at INFO."""
    if LIFECYCLE_LOGGER.isEnabledFor(logging.INFO):
        LIFECYCLE_LOGGER.info(event, extra={EVENT_KEY: {"event": event, **fields}})


class ClientFaultFilter(logging.Filter):
    """Turns uvicorn's ERROR-with-traceback for a client's bad WebSocket frame into one short WARNING.

    uvicorn logs every WebSocket text frame that is not UTF-8 as an exception on
    ``uvicorn.error``, although the fault is the client's (which gets close code 1007, as it
    should): any client could fill the error log. Such a record becomes a WARNING without the
    traceback, at most one per ``interval`` seconds, the next one saying how many were dropped.
    Every other record passes unchanged.
    """

    MESSAGE = "Invalid UTF-8 sequence received from client."

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._next = -math.inf
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.MESSAGE or record.levelno < logging.ERROR:
            return True
        now = self.clock()
        if now < self._next:
            self._dropped += 1
            return False
        self._next = now + self.interval
        dropped, self._dropped = self._dropped, 0
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "a WebSocket client sent a text frame that is not UTF-8; closed the connection with 1007"
        if dropped:
            record.msg += f" ({dropped} more not logged)"
        record.args = None
        record.exc_info = record.exc_text = None
        return True


def install_server_log_filters() -> None:
    """Put :class:`ClientFaultFilter` on uvicorn's error logger (once per process)."""
    target = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, ClientFaultFilter) for existing in target.filters):
        target.addFilter(ClientFaultFilter())
