"""One line per event, as ``key=value`` text or as JSON (LOG_FORMAT); listeners see every event.

The events are the daemon's record of what it did (docs/operations.md "Logs"). ``listen`` hands each
one, whatever LOG_LEVEL filters out of the log, to the metrics (``ops.metrics``): what the metrics
count is what the log says, with no second bookkeeping inside the daemon.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

LOGGER = logging.getLogger("sensor_etl")
Listener = Callable[[str, Mapping[str, object]], None]
_listeners: list[Listener] = []


def _value(value: object) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (not text or any(c in text for c in ' "=\n\t')) else text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        fields = " ".join(f"{k}={_value(v)}" for k, v in getattr(record, "fields", {}).items())
        line = f"{stamp} {record.levelname:<7} {record.getMessage()}" + (f" {fields}" if fields else "")
        if record.exc_info:  # only for bugs (internal_error): the traceback, kept on the event's line
            line += " traceback=" + _value(self.formatException(record.exc_info))
        return line.replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "event": record.getMessage(),
            **{k: (v if isinstance(v, (int, float, bool)) or v is None else str(v)) for k, v in getattr(record, "fields", {}).items()},
        }
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


class _TerminalHandler(logging.StreamHandler):
    """On a terminal each line first clears the line it starts on, so a worker's line wipes the
    supervisor's progress line (redrawn below it) instead of being glued to its end."""

    def format(self, record: logging.LogRecord) -> str:
        return "\r\x1b[K" + super().format(record)


def configure(level: str, fmt: str) -> None:
    handler = _TerminalHandler(sys.stderr) if sys.stderr.isatty() else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level)
    LOGGER.propagate = False


def listen(listener: Listener) -> None:
    """Call ``listener(name, fields)`` for every event from now on, at any level; it must be quick (an
    error it raises is logged as ``listener_failed`` and ignored)."""
    _listeners.append(listener)


def unlisten(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def event(level: int, name: str, **fields: object) -> None:
    """Log ``name`` with its fields (those that are None are left out); the event name is a stable, greppable word."""
    kept = {k: v for k, v in fields.items() if v is not None}
    for listener in _listeners:
        try:
            listener(name, kept)
        except Exception as exc:  # counting an event must never change what the daemon does about it
            LOGGER.warning("listener_failed", extra={"fields": {"event": name, "error": repr(exc)}})
    LOGGER.log(level, name, extra={"fields": kept})


def debug(name: str, **fields: object) -> None:
    event(logging.DEBUG, name, **fields)


def info(name: str, **fields: object) -> None:
    event(logging.INFO, name, **fields)


def warning(name: str, **fields: object) -> None:
    event(logging.WARNING, name, **fields)


def error(name: str, **fields: object) -> None:
    event(logging.ERROR, name, **fields)
