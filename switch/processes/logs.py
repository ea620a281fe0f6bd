"""The node's logs: structlog over stdlib `logging`, one JSON object per line or plain text.

Three kinds of record meet in one handler on the root logger, each rendered by structlog's
`ProcessorFormatter`, so `log_format` decides the shape of every line whoever wrote it:

* stdlib `logging` calls (most of the code) and structlog loggers (`get_logger`);
* Twisted's `twisted.logger` events (the supervisor, the front door, the worker), forwarded by
  `TwistedToLogging` with their keyword fields;
* a media worker's own records, which the worker writes to its stdout as JSON lines (`configure`
  with `log_format="json"`); the supervisor relays each with its fields (`WORKER_RECORD`), so a
  worker's line keeps its own timestamp, level and call fields and gains no second timestamp.

Fields that tie a line to a call are bound where a call is handled (`bind_call`): `call_id`,
`kiosk`, `facility` and `worker` (contextvars, so each AMP request's task carries its own).

`log_format = "json"` gives one valid JSON object per line (`json.loads` accepts each); "console"
gives plain text, coloured only on a terminal.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO, cast

import structlog
from structlog.types import EventDict, Processor, WrappedLogger
from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer  # type: ignore[import-untyped]

__all__ = ["configure", "announce", "get_logger", "bind_call", "TwistedToLogging", "CALL_FIELDS",
           "WORKER_RECORD", "LEVELS"]

CALL_FIELDS = ("call_id", "kiosk", "facility", "worker")
# The attribute of a relayed worker record holding the worker's own fields; the supervisor
# (switch.processes.supervisor) passes it as the `worker_record` keyword of its Twisted events.
WORKER_RECORD = "worker_record"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}
_TWISTED_LEVELS = {LogLevel.debug: logging.DEBUG, LogLevel.info: logging.INFO,
                   LogLevel.warn: logging.WARNING, LogLevel.error: logging.ERROR,
                   LogLevel.critical: logging.CRITICAL}
# Twisted event keys that are bookkeeping, not fields worth a column.
_TWISTED_SKIP = frozenset({"format", "message", "isError", "system", "time", "why", "failure",
                           "line", "output"})
# Twisted's own `event` keyword names what happened; structlog's `event` is the message.
_TWISTED_RENAME = {"event": "event_type", "worker_id": "worker"}
_SCALARS = (str, int, float, bool, type(None))


def bind_call(**fields: Any) -> None:
    """Bind call fields (call_id, kiosk, facility, worker) to the current task's log lines.
    None values are skipped, so a partial answer never erases what is already known."""
    structlog.contextvars.bind_contextvars(
        **{k: v for k, v in fields.items() if v is not None})


def announce(logger_name: str, message: str, **fields: Any) -> None:
    """A line that is always written, whatever the level (e.g. `ics serve`'s ports, which
    scripts wait for), in the configured format, with `fields` as fields."""
    record = logging.LogRecord(logger_name, logging.INFO, __file__, 0, "%s", (message,), None)
    setattr(record, WORKER_RECORD, fields)
    for handler in logging.getLogger().handlers:
        handler.handle(record)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


def _relayed_fields(logger: WrappedLogger, method_name: str,
                    event_dict: EventDict) -> EventDict:
    """A record relayed from a worker or Twisted brings its fields; they win over the defaults
    (a worker's own timestamp and level are kept)."""
    record = event_dict.get("_record")
    fields = getattr(record, WORKER_RECORD, None) if record is not None else None
    if isinstance(fields, Mapping):
        for key, value in fields.items():
            if key not in ("_record", "_from_structlog"):
                event_dict[key] = value
    return event_dict


def _process_fields(fields: Mapping[str, Any]) -> Processor:
    """Fields of the whole process (a worker's id): on every line, whichever thread logs it."""
    def add(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
        return event_dict
    return add


def _shared_processors(process: Mapping[str, Any]) -> list[Processor]:
    return [
        _process_fields(process),
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _relayed_fields,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
    ]


def _renderer(log_format: str, stream: TextIO) -> list[Processor]:
    if log_format == "json":
        return [structlog.processors.format_exc_info,
                structlog.processors.UnicodeDecoder(),
                structlog.processors.JSONRenderer(default=repr)]
    colors = bool(getattr(stream, "isatty", lambda: False)())
    # Plain tracebacks: a rich one would print local variables (a PIN, a token) into the log.
    return [structlog.dev.ConsoleRenderer(colors=colors,
                                          exception_formatter=structlog.dev.plain_traceback)]


def configure(log_format: str = "console", level: str | int = "info", *,
              stream: TextIO | None = None, twisted: bool = True, **bound: Any) -> logging.Handler:
    """Route stdlib logging, structlog and (with `twisted`) Twisted's logger to `stream`
    (stderr by default), rendered as `log_format` ("json" or "console"). `bound` fields
    (e.g. worker="w1") are on every line of this process. Returns the handler installed."""
    if log_format not in ("json", "console"):
        raise ValueError(f"log_format must be 'json' or 'console', got {log_format!r}")
    stream = stream if stream is not None else sys.stderr
    lvl = level if isinstance(level, int) else LEVELS.get(str(level).lower())
    if lvl is None:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    shared = _shared_processors(dict(bound))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *_renderer(log_format, stream)])
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False)
    structlog.contextvars.clear_contextvars()
    if twisted:
        from twisted.logger import globalLogBeginner
        # mypy does not see zope's @implementer: the observer is an ILogObserver all the same.
        globalLogBeginner.beginLoggingTo([cast(ILogObserver, TwistedToLogging())],
                                         redirectStandardIO=False,
                                         discardBuffer=False)
    return handler


@implementer(ILogObserver)
class TwistedToLogging:
    """A Twisted log observer that hands each event to stdlib logging with its fields.

    The message is Twisted's formatted text; keyword fields with plain values become fields
    (one-letter names are format shorthands whose values are already in the text). A failure
    becomes the record's exception."""

    def __call__(self, event: dict[str, Any]) -> None:
        level = _TWISTED_LEVELS.get(event.get("log_level"), logging.INFO)
        if event.get("isError") and level < logging.ERROR:
            level = logging.ERROR
        namespace = event.get("log_namespace")
        # Twisted's legacy log.msg() callers (ports opening, the HTTP access log) say log_legacy.
        logger = logging.getLogger("twisted" if namespace in (None, "log_legacy")
                                   else namespace)
        if not logger.isEnabledFor(level):
            return
        fields: dict[str, Any] = {}
        source_fields = getattr(event.get("log_source"), "log_fields", None)
        if callable(source_fields):            # e.g. a worker's call: call_id, kiosk, facility
            fields.update({k: v for k, v in source_fields().items() if v is not None})
        relayed = event.get(WORKER_RECORD)
        if isinstance(relayed, Mapping):
            fields.update(relayed)
        else:
            for key, value in event.items():
                if (key.startswith("log_") or key in _TWISTED_SKIP or len(key) == 1
                        or not isinstance(value, _SCALARS)):
                    continue
                fields[_TWISTED_RENAME.get(key, key)] = value
        text = fields.pop("event", None) if isinstance(relayed, Mapping) else None
        if not isinstance(text, str):
            text = formatEvent(event) or ""
        failure = event.get("log_failure")
        exc_info = ((failure.type, failure.value, failure.getTracebackObject())
                    if failure is not None else None)
        logger.log(level, "%s", text, exc_info=exc_info, extra={WORKER_RECORD: fields})
