"""Log lines, as text or JSON (`log_format`), in the `registry serve` process and in each
of its workers. Every line written while a request is served carries its request ID
(registry.context); the access line of each request comes from api/observe.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from typing import Any

from registry import context

# The fields an access line carries besides its message, for the JSON form.
ACCESS_FIELDS = (
    "method",
    "route",
    "path",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "user",
    "address",
)


ACCESS = logging.getLogger("registry.access")
ACCESS_FORMAT = "%s %s %d %d B in, %d B out, %.2f ms, user %s from %s"
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_plain_records = logging.getLogRecordFactory()


def _stamped(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _plain_records(*args, **kwargs)
    record.request_id = context.current().request_id
    return record


def stamp_request_ids() -> None:
    """Give every log record the ID of the request it was written for (any handler's:
    ours, or a test's)."""
    logging.setLogRecordFactory(_stamped)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return _text_line(super().format(record), getattr(record, "request_id", None))


def _text_line(line: str, request_id: str | None) -> str:
    return f"{line} [request {request_id}]" if request_id else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _json_line(
            self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            getattr(record, "request_id", None),
            {key: getattr(record, key, None) for key in ACCESS_FIELDS},
            self.formatException(record.exc_info) if record.exc_info else None,
        )


def _json_line(
    stamp: str,
    level: str,
    logger: str,
    message: str,
    request_id: str | None,
    fields: dict[str, Any],
    error: str | None = None,
) -> str:
    line: dict[str, Any] = {"time": stamp, "level": level, "logger": logger, "message": message}
    if request_id:
        line["request_id"] = request_id
    line.update((key, value) for key, value in fields.items() if value is not None)
    if error:
        line["error"] = error
    return json.dumps(line, separators=(",", ":"), default=str)


class _Direct:
    """Our handler, for access lines written to its stream without a LogRecord."""

    handler: logging.StreamHandler[Any] | None = None
    json = False
    second = -1
    stamp = ""


def _passes_only_through(handler: logging.Handler) -> bool:
    """Whether an access record would go to `handler` alone, unfiltered: nothing but
    configure()'s set-up (a test's capture, or an operator's handler, adds to it)."""
    root = logging.getLogger()
    parent = ACCESS.parent
    return (
        ACCESS.propagate
        and not ACCESS.handlers
        and not ACCESS.filters
        and parent is not None
        and (parent is root or (not parent.handlers and parent.propagate))
        and root.handlers == [handler]
        and not handler.filters
        and handler.level <= logging.INFO
    )


def _utc_time(created: float, separator: str) -> tuple[str, int]:
    """A record's time, as the formatters write it: the seconds (made once a second)
    and the milliseconds."""
    second = int(created)
    if second != _Direct.second:
        _Direct.second = second
        _Direct.stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
    return _Direct.stamp.replace(" ", separator), int((created - second) * 1000)


def access(fields: dict[str, Any], args: tuple[Any, ...]) -> None:
    """An access line: `ACCESS_FORMAT % args`, with `fields` for the JSON form.

    Written straight to our handler's stream when it alone would get the line, as
    configure() sets things up: a LogRecord, its formatting and the handler chain took a
    sixth of a manifest GET's CPU (measured, 2 workers), more than the rest of what this
    module and api/observe.py add. The line is the one the formatters write (a test holds
    them to it). Otherwise, through logging like any line."""
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    handler = _Direct.handler
    if handler is not None and _passes_only_through(handler):
        created = time.time()
        request_id = context.current().request_id
        message = ACCESS_FORMAT % args
        if _Direct.json:
            stamp, ms = _utc_time(created, "T")
            text = _json_line(
                f"{stamp}.{ms:03d}Z", "info", ACCESS.name, message, request_id, fields
            )
        else:
            stamp, ms = _utc_time(created, " ")
            text = _text_line(f"{stamp},{ms:03d} INFO {ACCESS.name}: {message}", request_id)
        try:
            with handler.lock or contextlib.nullcontext():
                handler.stream.write(text + handler.terminator)
                handler.flush()
            return
        except Exception:  # a closed or broken stream: logging reports it its own way
            pass
    ACCESS.info(ACCESS_FORMAT, *args, extra=fields)


def _unaddressed(record: logging.LogRecord) -> bool:
    """uvicorn's line for a malformed request, which registry/server.py writes instead
    with the client's address and a hint, once a minute per address."""
    return record.msg != "Invalid HTTP request received."


def configure(level: str, form: str) -> None:
    """One handler on the root logger (standard error), for us and for uvicorn."""
    # No line names its caller, thread or process: leave out what finding them costs
    # (a walk up the stack for every record; a deep one while a request is served).
    logging._srcfile = None  # the logging HOWTO's advice
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if form == "json" else TextFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    _Direct.handler, _Direct.json = handler, form == "json"
    stamp_request_ids()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own loggers go through ours; its access log is replaced by ours.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").addFilter(_unaddressed)
    # Alembic narrates every plugin it loads, and httpx every upstream request of the
    # mirror and every webhook, at INFO; the operator needs only our summary.
    for chatty in ("alembic", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
