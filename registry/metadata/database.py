"""The database handle: an async engine with read and write connections.

SQLite runs in WAL mode with a busy timeout, and write transactions start with
BEGIN IMMEDIATE so that two writers queue on the lock instead of failing when a
read transaction tries to upgrade. Reads run in autocommit (no BEGIN round trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from anyio import to_thread
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.util import await_only

from registry.errors import Unavailable
from registry.metadata import pgpool
from registry.metadata.pgpool import PoolBusy, StatementPool
from registry.metrics import (
    CONNECTIONS_IN_USE,
    CONNECTIONS_WAITING,
    query_duration,
    statement_name,
)

log = logging.getLogger("registry.database")

# Errors that say the database is unreachable, busy or going away, rather than that a
# statement is wrong: SQLAlchemy's, and the drivers' own for statements sent to them
# directly (Database.driver). A timeout (connect, pool, statement) is one too.
_OUTAGES: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    sqlite3.OperationalError,
    OSError,
    TimeoutError,
)
with contextlib.suppress(ImportError):
    import asyncpg

    # InternalClientError: the driver is still reading the server's goodbye on a
    # connection it has not yet seen closed (a shutdown, a terminated backend).
    _OUTAGES += (
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
    )
# PostgreSQL's SQLSTATE classes of the same: connection exception, insufficient resources
# (too many connections, disk full), operator intervention (shutting down, starting up,
# a statement cancelled by its timeout).
_OUTAGE_STATES = ("08", "53", "57")
# A transaction PostgreSQL aborted to break a deadlock, or for a serialization failure:
# running it again is the remedy its manual gives.
_CONFLICT_STATES = ("40P01", "40001")
T = TypeVar("T")


def _conflict(exc: BaseException) -> bool:
    """Whether PostgreSQL aborted the transaction to break a deadlock (SQLAlchemy's error
    wraps the driver's; statements sent to the driver directly raise its own)."""
    return getattr(getattr(exc, "orig", exc), "sqlstate", None) in _CONFLICT_STATES


def _outage(exc: BaseException) -> bool:
    if isinstance(exc, _OUTAGES):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig  # type: ignore[assignment]
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state[:2] in _OUTAGE_STATES


def _spoiled(exc: BaseException) -> bool:
    """Whether a PostgreSQL connection that raised `exc` must not be used again: the
    database went away, the driver lost track of the protocol, or a statement was
    cancelled half-way (a request that ended while it waited)."""
    return _outage(exc) or isinstance(exc, asyncio.CancelledError)


@contextmanager
def _waiting() -> Iterator[None]:
    CONNECTIONS_WAITING.value += 1
    try:
        yield
    finally:
        CONNECTIONS_WAITING.value -= 1


def _before_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    conn.info.setdefault("registry_started", []).append(time.perf_counter())


def _after_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    started = conn.info["registry_started"].pop()
    query_duration(statement_name(statement)).observe(time.perf_counter() - started)


def _alive(timeout_seconds: float) -> Callable[[Any, Any, Any], None]:
    """A pooled PostgreSQL connection's check before use, in place of pool_pre_ping,
    which cost a hot read three extra round trips (BEGIN, a ping, ROLLBACK) and most of
    its time. A connection the server closed (a restart, a terminated backend) is known
    to the driver without a word on the wire; one that sat idle for a while is pinged
    once, in case its peer vanished without closing. Raising DisconnectionError makes
    the pool replace the connection and check out again."""

    def check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        driver = record.driver_connection
        if driver.is_closed():
            raise DisconnectionError("the server closed this pooled connection")
        returned = record.info.get("registry_returned")
        # The same bound as the statements' pool.
        if returned is None or time.monotonic() - returned < pgpool.PING_AFTER_IDLE_SECONDS:
            return  # new, or in use a moment ago
        try:
            await_only(driver.fetchrow(";", timeout=timeout_seconds))
        except _OUTAGES as exc:
            raise DisconnectionError(f"a pooled connection did not answer a ping: {exc}") from exc

    return check


def _returned(dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info["registry_returned"] = time.monotonic()


def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    record.record_info["registry_in_use"] = True
    CONNECTIONS_IN_USE.value += 1


def _checked_in(dbapi_connection: Any, record: Any) -> None:
    # Only what was counted out: a checkout that failed or was cancelled before its
    # `checkout` event (a connect refused, a request cancelled mid-checkout) is still
    # checked in, and the count would go below zero. record_info outlives invalidation.
    if record is not None and record.record_info.pop("registry_in_use", False):
        CONNECTIONS_IN_USE.value -= 1


# Runs of a transaction PostgreSQL aborts to break a deadlock, in all. Under the
# heaviest test (16 clients pushing against two collectors) three in a row happened
# once in several thousand runs; five, with the growing jitter, make it vanishing.
DEADLOCK_ATTEMPTS = 5


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        timeout_seconds: float = 10,
    ) -> None:
        """`timeout_seconds` bounds, on PostgreSQL, connecting, waiting for a pooled
        connection, and each statement (three times as long): a database that hangs
        gives 503 in bounded time instead of holding requests."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            # A fixed set of connections: past it, requests wait their turn rather than
            # open (and close) a connection, a thread and its PRAGMAs each. Reads run in
            # autocommit, so a returned connection needs no rollback.
            options.update(
                connect_args={"timeout": 30},
                pool_size=pool_size,
                max_overflow=0,
                pool_reset_on_return=None,
            )
        else:
            # Fixed too: an overflow connection is closed when it comes back, so under a
            # steady load above the pool each request paid a connect (TLS attempt,
            # authentication) and a close. Waiting for a pooled one is cheaper, and the
            # count a worker can open is known (README, "The compose stack": sizing).
            # The statements of the hot paths have `pool_size` connections of their
            # own (pgpool.py); the rest, half as many.
            options.update(
                pool_size=max(2, pool_size // 2),
                max_overflow=0,
                pool_timeout=timeout_seconds,
                connect_args={"timeout": timeout_seconds, "command_timeout": 3 * timeout_seconds},
            )
        self.engine = create_async_engine(url, **options)
        self._statements: StatementPool | None = None
        if not self.is_sqlite:
            dsn = self.engine.url.set(drivername="postgresql").render_as_string(False)
            self._statements = StatementPool(dsn, pool_size, timeout_seconds)
        self._writers = _SqliteWriters(self.engine.url.database) if self.is_sqlite else None
        path = self.engine.url.database
        self._loop_reads = _LoopReads(path) if self.is_sqlite and path and _on_disk(path) else None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        event.listen(self.engine.sync_engine, "before_cursor_execute", _before_execute)
        event.listen(self.engine.sync_engine, "after_cursor_execute", _after_execute)
        if not self.is_sqlite:
            # Before _checked_out: a connection it refuses is replaced, and counted once.
            event.listen(self.engine.sync_engine.pool, "checkout", _alive(timeout_seconds))
            event.listen(self.engine.sync_engine.pool, "checkin", _returned)
        event.listen(self.engine.sync_engine.pool, "checkout", _checked_out)
        event.listen(self.engine.sync_engine.pool, "checkin", _checked_in)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        conn = await self._connect()
        try:
            with _outages():
                yield conn
        finally:
            with _outages():  # returning a dead connection may fail too
                await conn.close()

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """The driver's own connection (aiosqlite or asyncpg), for statements sent to it
        directly (statements.py): from SQLAlchemy's pool on SQLite, with no SQLAlchemy
        Connection built around it; from asyncpg's own pool on PostgreSQL (pgpool.py)."""
        if self._statements is not None:
            pool = self._statements
            with _outages():
                conn = await pool.acquire()
                try:
                    yield conn
                except BaseException as exc:
                    if _spoiled(exc):
                        # Not pooled again: it may still be closing, or reading the rest
                        # of a failed answer, and the next request on it would fail too.
                        # The pool opens another in its place.
                        conn.terminate()
                    raise
                finally:
                    pool.release(conn)
            return
        with _outages(), _waiting():
            pooled = await self.engine.raw_connection()
        try:
            with _outages():
                yield pooled.driver_connection
        finally:
            pooled.close()  # nothing to reset (pool_reset_on_return=None): no awaits

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back on an error."""
        async with self.writer_turn(), self._transaction() as conn:
            yield conn

    async def transact(
        self, work: Callable[[AsyncConnection], Awaitable[T]], attempts: int = DEADLOCK_ATTEMPTS
    ) -> T:
        """`work` in one write transaction, run again if PostgreSQL aborts it to break a
        deadlock (see retrying)."""

        async def once() -> T:
            async with self.write() as conn:
                return await work(conn)

        return await self.retrying(once, attempts)

    async def retrying(
        self, run: Callable[[], Awaitable[T]], attempts: int = DEADLOCK_ATTEMPTS
    ) -> T:
        """`run` (one whole transaction), again, up to `attempts` times in all, if
        PostgreSQL aborts it to break a deadlock. The lock orders of services/ make those
        rare, but PostgreSQL queues waiters for one row behind one another, so even a
        one-statement transaction can be the one it picks; running it again is the remedy
        its manual gives, and cheaper than a 500 for the client."""
        for attempt in range(1, attempts + 1):
            try:
                return await run()
            except Exception as exc:
                if attempt == attempts or not _conflict(exc):
                    raise
                log.info("transaction aborted by PostgreSQL to break a deadlock; running it again")
                await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
        raise AssertionError("unreachable")

    def let_writers_go(self) -> None:
        """Within writer_turn, from any thread: other processes may write from now."""
        if self._writers is not None:
            self._writers.let_go()

    @asynccontextmanager
    async def writer_turn(self) -> AsyncIterator[None]:
        """Wait for the turn to write: SQLite takes one writer at a time."""
        if self._writers is None:
            yield
            return
        CONNECTIONS_WAITING.value += 1
        waiting = True
        try:
            async with self._writers.turn():
                CONNECTIONS_WAITING.value -= 1
                waiting = False
                yield
        finally:
            if waiting:
                CONNECTIONS_WAITING.value -= 1

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        conn = await self._connect()
        try:
            with _outages():
                await conn.execution_options(registry_write=True)
                async with conn.begin():
                    yield conn
        finally:
            with _outages():  # returning a dead connection may fail too
                await conn.close()

    async def ping(self) -> None:
        """Raise Unavailable unless the database answers a trivial query."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def _connect(self) -> AsyncConnection:
        conn = self.engine.connect()
        # (asyncpg lets a refused connection through as a bare OSError.)
        with _outages(), _waiting():
            return await conn.start()

    def read_now(self, text: str, values: list[Any]) -> list[Any] | None:
        """On SQLite, a point lookup's rows read on this thread (_LoopReads); None when it
        has to go through the pool instead."""
        return None if self._loop_reads is None else self._loop_reads.rows(text, values)

    async def close(self) -> None:
        if self._statements is not None:
            await self._statements.close()
        await self.engine.dispose()
        if self._writers is not None:
            self._writers.close()
        if self._loop_reads is not None:
            self._loop_reads.close()


class _LoopReads:
    """SQLite point lookups answered on the calling thread (the event loop's), each on a
    connection of that thread's own. Through aiosqlite, a lookup of some 20 us cost two
    hand-offs between threads of about 80 us of CPU each: half of a manifest GET's CPU
    (benchmarks/README.md). A read in WAL mode waits for no writer, so the loop blocks
    only for the lookup itself (a few index pages, cached by the OS once read); in the
    rare cases where SQLite answers busy (a WAL being reset), the caller goes the
    aiosqlite way, whose busy timeout waits in its own thread."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._mine = threading.local()
        self._opened: list[sqlite3.Connection] = []

    def rows(self, text: str, values: list[Any]) -> list[Any] | None:
        """The rows, or None when SQLite cannot answer at once, or at all: the caller
        asks through aiosqlite, which reports an error as every other statement does."""
        try:
            conn = self._connection()
            return conn.execute(text, values).fetchall()
        except sqlite3.Error:
            return None

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._mine, "conn", None)
        if conn is None:
            # timeout=0: busy is answered at once rather than slept on, on the loop.
            # check_same_thread=False only so that close() may run on another thread.
            conn = sqlite3.connect(
                self._path, timeout=0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA query_only=ON")
            self._mine.conn = conn
            self._opened.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._opened:
            conn.close()
        self._opened.clear()
        self._mine = threading.local()


class _SqliteWriters:
    """SQLite writers queue here: this process's tasks on an asyncio lock, and processes
    (workers, the CLI) on a lock file beside the database. Left to SQLite, a writer that
    finds the database locked waits in its busy handler, which sleeps in growing steps
    (1 ms up to 100 ms) while the database may already be free: small pushes on two
    workers went from 180-200 to 210-230 blobs/s with this lock."""

    def __init__(self, database: str | None) -> None:
        self._tasks = asyncio.Lock()
        self._path = f"{database}-writer.lock" if _on_disk(database) else None
        self._fd: int | None = None

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self._tasks:
            fd = self._lock_file()
            if fd is None:
                yield
                return
            await _flock(fd)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def let_go(self) -> None:
        """Give the lock file back to other processes, from any thread: a hot write does
        so on SQLite's thread right after its COMMIT, rather than once the event loop
        gets to the end of its turn (busy with other requests, it took 0.4 ms more on
        average under tag pushes). The task keeps this process's turn until then, and
        unlocking again there changes nothing."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _lock_file(self) -> int | None:
        if self._fd is None and self._path is not None:
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                log.warning(
                    "no writer lock file %s (%s); SQLite's own locking applies", self._path, exc
                )
                self._path = None
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _on_disk(database: str | None) -> bool:
    """Whether a SQLite URL's database is a file other connections can open by its path."""
    return database not in (None, "", ":memory:") and not str(database).startswith("file:")


async def _flock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # Waits in a thread, woken as soon as the lock is free (polling with short sleeps
        # gave 20% fewer small pushes). A cancelled waiter still waits for the lock and then
        # gives it back: the holder is another process, busy for a few milliseconds.
        await to_thread.run_sync(fcntl.flock, fd, fcntl.LOCK_EX)


@contextlib.contextmanager
def _outages() -> Iterator[None]:
    """An error that says the database is out becomes Unavailable (503), naming it."""
    try:
        yield
    except (PoolTimeout, PoolBusy) as exc:
        # Every pooled connection stayed busy for the pool's timeout: the database (or
        # this process) is overloaded, which a client may retry, not a fault of ours.
        raise Unavailable(
            message="metadata database busy: no pooled connection came free in time "
            f"({exc.args[0].split(',')[0] if exc.args else exc}); if this persists, raise "
            "database.pool_size or add workers",
            headers={"Retry-After": "1"},
        ) from exc
    except Exception as exc:
        if not _outage(exc):
            raise
        reason = str(getattr(exc, "orig", exc)) or type(exc).__name__
        raise Unavailable(
            message=f"metadata database unavailable ({reason.splitlines()[0][:300]}); "
            "check that it is running"
        ) from exc


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let us issue BEGIN ourselves (see _sqlite_begin) instead of the driver's guesswork.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # The busy timeout first: a connection opened while another one writes or checkpoints
    # must wait for the lock, not fail with "database is locked" (two replicas of one
    # SQLite file did, one pull in ten). WAL is a property of the file, set once: asking
    # for it on every connection takes a lock the busy handler does not cover.
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    for pragma in ("foreign_keys=ON", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get("registry_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
