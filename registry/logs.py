"""Log lines, as text or JSON (`log_format`), in the `registry serve` process and in each
of its workers. Every line written while a request is served carries its request ID
(registry.context); the access line of each request comes from api/observe.py.
"""

from __future__ import annotations

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
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request {request_id}]" if request_id else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        for key in ACCESS_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


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
    stamp_request_ids()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own loggers go through ours; its access log is replaced by ours.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic narrates every plugin it loads, and httpx every upstream request of the
    # mirror and every webhook, at INFO; the operator needs only our summary.
    for chatty in ("alembic", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
