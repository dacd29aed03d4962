"""Prometheus metrics of this process, with prometheus_client.

With several uvicorn workers, `registry serve` points PROMETHEUS_MULTIPROC_DIR at a fresh
folder before the workers start (cli/serve.py), so each worker writes its values to files
there and a scrape, whichever worker takes it, adds them all up (multiprocess mode).
Each replica answers for its own processes: Prometheus scrapes every replica. What the
database knows for the whole registry (garbage collection's and the mirror's totals,
webhook backlogs, upload sessions) is read at scrape time (api/metrics.py) and is the
same from every replica: aggregate it with max(), not sum().

Labels are bounded: routes are templates (`/v2/{name:path}/manifests/{reference}`),
statements are names or `verb table`, never a repository, tag or digest.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import re
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_DECLARED: list[Declared] = []  # the module's own, made by make_all


@functools.cache
def _set_up() -> None:
    """Once per process, before its first metric is made (not at import: `registry serve`
    sets MULTIPROC_ENV after importing this module, before its workers make any)."""
    # No `_created` series beside every counter and histogram: twice the series for a
    # timestamp nobody graphs.
    disable_created_metrics()
    if os.environ.get(MULTIPROC_ENV):
        # Values live in files there from the first metric made.
        os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)


class Declared:
    """A metric declared at import and made on its first use, in the process that uses
    it: importing this module registers nothing and writes no file."""

    def __init__(self, kind: type[Counter | Gauge | Histogram], *args: Any, **kwargs: Any):
        self._kind, self._args, self._kwargs = kind, args, kwargs
        self.buckets: tuple[float, ...] = kwargs.get("buckets", ())
        if "registry" not in kwargs:
            _DECLARED.append(self)

    @functools.cached_property
    def made(self) -> Any:
        _set_up()
        return self._kind(*self._args, **self._kwargs)

    def labels(self, *values: str) -> Any:
        return self.made.labels(*values)

    def inc(self, amount: float = 1) -> None:
        self.made.inc(amount)

    def set(self, value: float) -> None:
        self.made.set(value)

    def observe(self, value: float) -> None:
        self.made.observe(value)


# Request latencies: from a cached manifest (a millisecond) to a layer (minutes).
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

HTTP_REQUESTS = Declared(
    Counter,
    "registry_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "code"],
)
HTTP_DURATION = Declared(
    Histogram,
    "registry_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route.",
    ["method", "route"],
    buckets=_HTTP_BUCKETS,
)
HTTP_IN_FLIGHT = Declared(
    Gauge,
    "registry_http_in_flight_requests",
    "Requests being served now.",
    multiprocess_mode="livesum",
)
HTTP_REQUEST_BYTES = Declared(
    Counter, "registry_http_request_bytes_total", "Bytes of request bodies, by route.", ["route"]
)
HTTP_RESPONSE_BYTES = Declared(
    Counter,
    "registry_http_response_bytes_total",
    "Bytes of response bodies sent by the registry itself (not by nginx or S3), by route.",
    ["route"],
)
SENDFILE_BYTES = Declared(
    Counter,
    "registry_http_sendfile_bytes_total",
    "Of the response bytes, those the kernel sent straight from a blob's file (sendfile).",
)
STORAGE_DURATION = Declared(
    Histogram,
    "registry_storage_operation_duration_seconds",
    "Blob store operations, by driver and operation (reads: to the last byte).",
    ["driver", "operation"],
    buckets=_FAST_BUCKETS,
)
STORAGE_ERRORS = Declared(
    Counter,
    "registry_storage_operation_errors_total",
    "Blob store operations that failed, by driver and operation.",
    ["driver", "operation"],
)
STORAGE_UPLOADED = Declared(
    Counter, "registry_storage_uploaded_bytes_total", "Bytes written to the blob store.", ["driver"]
)
STORAGE_DOWNLOADED = Declared(
    Counter,
    "registry_storage_downloaded_bytes_total",
    "Bytes read from the blob store.",
    ["driver"],
)
DB_DURATION = Declared(
    Histogram,
    "registry_db_query_duration_seconds",
    "Database statements, by name (the hot queries) or verb and table.",
    ["statement"],
    buckets=_FAST_BUCKETS,
)
DB_IN_USE = Declared(
    Gauge,
    "registry_db_connections_in_use",
    "Database connections checked out of the pools.",
    multiprocess_mode="livesum",
)
DB_WAITING = Declared(
    Gauge,
    "registry_db_connections_waiting",
    "Tasks waiting for a database connection (or, on SQLite, the writer's turn).",
    multiprocess_mode="livesum",
)
WEBHOOK_ATTEMPTS = Declared(
    Counter,
    "registry_webhook_attempts_total",
    "Webhook delivery attempts, by outcome (delivered, retried, failed, refused).",
    ["outcome"],
)
WEBHOOK_DURATION = Declared(
    Histogram,
    "registry_webhook_attempt_duration_seconds",
    "Time of a webhook delivery attempt, to the end of the receiver's answer.",
    buckets=_HTTP_BUCKETS,
)

UNSIGNED_PULLS = Declared(
    Counter,
    "registry_unsigned_pulls_total",
    "Pulls of images no trusted key signed, in namespaces with a signature policy: "
    "served (audit) or refused (enforce).",
    ["outcome"],
)
REPLICATION_ITEMS = Declared(
    Counter,
    "registry_replication_items_total",
    "Replication items settled, by direction (push, pull) and outcome (copied, skipped, "
    "failed: after their retries; retried: an attempt that failed and waits to go again).",
    ["direction", "outcome"],
)
REPLICATION_BYTES = Declared(
    Counter,
    "registry_replication_bytes_total",
    "Blob bytes replication sent to remotes (push) or fetched from them (pull).",
    ["direction"],
)
REPLICATION_LAG = Declared(
    Histogram,
    "registry_replication_lag_seconds",
    "From a push to its copy by an event-triggered rule being at the remote.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)


# What changes on every request is counted in plain numbers first, and moved into
# prometheus_client's values by `publish`, every PUBLISH_SECONDS and before each scrape:
# in multiprocess mode a value's change is a lock, a getpid and a write to a
# memory-mapped file, and several per request came to a few per cent of a worker's CPU.
# A scrape by one worker sees the others' numbers as of their last publish (a second).
# They are changed and published on the event loop's thread only (every caller is a
# coroutine), so a publish never interleaves with a change.
PUBLISH_SECONDS = 1.0


class Level:
    """A gauge's value (in flight, connections in use)."""

    __slots__ = ("gauge", "value")

    def __init__(self, gauge: Declared) -> None:
        self.gauge = gauge
        self.value = 0

    def publish(self) -> None:
        self.gauge.set(self.value)


class Tally:
    """A counter child's increments since the last publish; the child is looked up then."""

    __slots__ = ("_child", "labels", "metric", "pending")

    def __init__(self, metric: Declared, labels: tuple[str, ...]) -> None:
        self.metric, self.labels = metric, labels
        self._child: Any = None
        self.pending = 0.0

    def inc(self, amount: float = 1) -> None:
        self.pending += amount

    def publish(self) -> None:
        if self.pending:
            if self._child is None:
                self._child = self.metric.labels(*self.labels) if self.labels else self.metric.made
            pending, self.pending = self.pending, 0.0
            self._child.inc(pending)


class Timings:
    """A histogram child's observations since the last publish, by bucket. It adds them
    to the child's own bucket and sum values (prometheus_client has no batch observe;
    tests/api/test_metrics.py holds the result to the child's own observe)."""

    __slots__ = ("_child", "bounds", "counts", "labels", "metric", "seen", "total")

    def __init__(self, metric: Declared, labels: tuple[str, ...]) -> None:
        self.metric, self.labels = metric, labels
        self._child: Any = None
        self.bounds = [*metric.buckets, math.inf]  # as the histogram's: every value has one
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.seen = False

    def observe(self, amount: float) -> None:
        # The first bucket whose bound is >= amount, as Histogram.observe picks it.
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.total += amount
        self.seen = True

    def publish(self) -> None:
        if not self.seen:
            return
        if self._child is None:
            self._child = self.metric.labels(*self.labels)
            assert list(self._child._upper_bounds) == self.bounds, self.metric
        for i, count in enumerate(self.counts):
            if count:
                self._child._buckets[i].inc(count)
                self.counts[i] = 0
        self._child._sum.inc(self.total)
        self.total, self.seen = 0.0, False


IN_FLIGHT = Level(HTTP_IN_FLIGHT)
CONNECTIONS_IN_USE = Level(DB_IN_USE)
CONNECTIONS_WAITING = Level(DB_WAITING)
LEVELS = (IN_FLIGHT, CONNECTIONS_IN_USE, CONNECTIONS_WAITING)
# One buffer per metric and labels.
_BUFFERS: dict[tuple[int, tuple[str, ...]], Tally | Timings] = {}


def tally(metric: Declared, *labels: str) -> Tally:
    found = _BUFFERS.setdefault((id(metric), labels), Tally(metric, labels))
    assert isinstance(found, Tally)
    return found


def timings(metric: Declared, *labels: str) -> Timings:
    found = _BUFFERS.setdefault((id(metric), labels), Timings(metric, labels))
    assert isinstance(found, Timings)
    return found


def make_all() -> None:
    """Every metric of this module, so that a scrape shows each family (at 0, if it
    has no labels) from a process's start, not from its first use."""
    for declared in _DECLARED:
        declared.made  # noqa: B018 (made on first access)


def publish() -> None:
    for level in LEVELS:
        level.publish()
    for buffer in list(_BUFFERS.values()):
        buffer.publish()


async def publish_forever() -> None:
    """A worker of every `registry serve` process (the app's lifespan)."""
    make_all()
    while True:
        publish()
        await asyncio.sleep(PUBLISH_SECONDS)


@functools.lru_cache(maxsize=1024)
def query_duration(statement: str) -> Timings:
    """The timings of one statement (labels() is a lookup under a lock)."""
    return timings(DB_DURATION, statement)


def exposition(extra: CollectorRegistry | None = None) -> bytes:
    """This process's metrics (every worker's, in multiprocess mode), then `extra`."""
    make_all()
    publish()
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        text = generate_latest(REGISTRY)
    return text + (generate_latest(extra) if extra is not None else b"")


def forget_dead_workers() -> None:
    """Drop the live gauges of worker processes that are gone (a worker uvicorn
    restarted after a crash), so in-flight counts do not keep theirs."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return
    for path in Path(folder).glob("gauge_livesum_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, folder)
        except PermissionError:
            pass


_VERB_TABLE = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|BEGIN|COMMIT|ROLLBACK|PRAGMA)\b"
    r"(?:.*?\b(?:FROM|INTO|UPDATE)\s+\"?(\w+))?",
    re.IGNORECASE | re.DOTALL,
)


@functools.lru_cache(maxsize=4096)
def statement_name(sql: str) -> str:
    """`select blobs`, `insert events`: a bounded label for a SQL statement."""
    found = _VERB_TABLE.match(sql)
    if found is None:
        return "other"
    verb, table = found.group(1).lower(), found.group(2)
    return f"{verb} {table.lower()}" if table else verb


@contextmanager
def timed(child: Any) -> Any:
    """Observe the time the block takes in a histogram's child."""
    start = time.perf_counter()
    try:
        yield
    finally:
        child.observe(time.perf_counter() - start)


def measured_store(driver: str) -> Callable[[type], type]:
    """A class decorator for a BlobStore: time its operations, count their failures,
    and count the bytes that go in and out."""

    def wrap_call(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        duration = timings(STORAGE_DURATION, driver, name)
        errors = tally(STORAGE_ERRORS, driver, name)

        @functools.wraps(method)
        async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                result = await method(self, *args, **kwargs)
            except Exception:
                errors.inc()
                raise
            finally:
                duration.observe(time.perf_counter() - start)
            return result

        return call

    def wrap_stream(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        duration = timings(STORAGE_DURATION, driver, name)
        errors = tally(STORAGE_ERRORS, driver, name)
        downloaded = tally(STORAGE_DOWNLOADED, driver)

        @functools.wraps(method)
        async def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                async for piece in method(self, *args, **kwargs):
                    downloaded.inc(len(piece))
                    yield piece
            except Exception:
                errors.inc()
                raise
            finally:
                duration.observe(time.perf_counter() - start)

        return stream

    def wrap_writes(method: Callable[..., Awaitable[Any]], chunks_at: int) -> Callable[..., Any]:
        uploaded = tally(STORAGE_UPLOADED, driver)

        @functools.wraps(method)
        async def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            args = list(args)  # type: ignore[assignment]
            if len(args) > chunks_at:
                args[chunks_at] = _counting(args[chunks_at], uploaded)  # type: ignore[index]
            elif "chunks" in kwargs:
                kwargs["chunks"] = _counting(kwargs["chunks"], uploaded)
            return await method(self, *args, **kwargs)

        return write

    def wrap_open(method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        downloaded = tally(STORAGE_DOWNLOADED, driver)

        @functools.wraps(method)
        async def open_span(self: Any, digest: Any, offset: int, length: int) -> Any:
            # The kernel reads the span (sendfile); it counts as read once opened.
            file = await method(self, digest, offset, length)
            if file is not None:
                downloaded.inc(length)
            return file

        return open_span

    def wrap_put(method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        uploaded = tally(STORAGE_UPLOADED, driver)

        @functools.wraps(method)
        async def put(self: Any, digest: Any, data: bytes) -> Any:
            await method(self, digest, data)
            uploaded.inc(len(data))

        return put

    def decorate(cls: type) -> type:
        # The byte counters wrap the chunks first; the timers wrap the whole call.
        cls.write_blob = wrap_writes(cls.write_blob, 1)  # type: ignore[attr-defined]
        cls.upload_append = wrap_writes(cls.upload_append, 2)  # type: ignore[attr-defined]
        cls.put_bytes = wrap_put(cls.put_bytes)  # type: ignore[attr-defined]
        cls.open_span = wrap_open(cls.open_span)  # type: ignore[attr-defined]
        for name in (
            "stat",
            "open_span",
            "read_bytes",
            "put_bytes",
            "write_blob",
            "delete",
            "upload_start",
            "upload_size",
            "upload_append",
            "upload_commit",
            "upload_cancel",
        ):
            setattr(cls, name, wrap_call(name, getattr(cls, name)))
        for name in ("read", "upload_read"):
            setattr(cls, name, wrap_stream(name, getattr(cls, name)))
        return cls

    return decorate


async def _counting(chunks: Any, counter: Tally) -> Any:
    async for piece in chunks:
        counter.inc(len(piece))
        yield piece
