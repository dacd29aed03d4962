"""The PostgreSQL connections the statements of the hot paths run on (statements.py):
a pool of asyncpg connections of our own, beside SQLAlchemy's, which serves everything
else.

Through SQLAlchemy's pool a checkout and return took 28 us of CPU with nothing to wait
for (greenlet switches, its events), and under load its queue and timeouts cost more than
the manifest GET's query. asyncpg's own pool still made two tasks per use (its acquire's
`wait_for` and its release's `shield`), a proxy object and a timeout scope; here a
connection free to use is taken and given back without an await, and only a caller that
must wait for one makes a future. Connections are opened when first needed and closed
after a minute unused; given back as they are (a statement here leaves nothing open to
reset: a transaction ends with its block, or the connection is terminated).

A connection unused for PING_AFTER_IDLE_SECONDS is pinged before use, in case its peer
vanished without closing it; one the server closed (a restart, a terminated backend) is
known to the driver and replaced without a word on the wire.

Every step below runs on the event loop's one thread: between two awaits nothing else
touches the pool, so the counts cannot race.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import asyncpg

from registry.metrics import CONNECTIONS_IN_USE, CONNECTIONS_WAITING

# A connection unused for longer is pinged before use.
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_LIFETIME_SECONDS = 60.0

Connection = Any  # asyncpg.Connection, whose methods are untyped


class PoolBusy(Exception):
    """No connection came free within the pool's timeout."""


class StatementPool:
    def __init__(self, dsn: str, size: int, timeout_seconds: float) -> None:
        self.dsn = dsn
        self.size = size
        self.timeout = timeout_seconds
        # Free connections, each with when it came back (monotonic): the newest on the
        # right, where they are taken from, so the least used age out on the left.
        self._idle: deque[tuple[Connection, float]] = deque()
        # Connections open, being opened or in use: at most `size`.
        self._open = 0
        # Callers waiting, first come first served, each with its deadline (the loop's
        # clock): each is given a connection, or None for a place to open one in
        # (counted in _open for it already), or PoolBusy at its deadline.
        self._waiters: deque[tuple[asyncio.Future[Connection | None], float]] = deque()
        # One timer for the oldest waiter's deadline, not one per waiter: under load
        # most callers wait a moment, and a timer each cost more than their query.
        self._expiry: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def acquire(self) -> Connection:
        """A connection for the caller alone, until it gives it back with release()."""
        while self._idle:
            conn, returned = self._idle.pop()
            if conn.is_closed():  # by the server, while it was idle
                self._open -= 1
                continue
            if time.monotonic() - returned < PING_AFTER_IDLE_SECONDS or await self._answers(conn):
                CONNECTIONS_IN_USE.value += 1
                return conn
        if self._closed:
            raise ConnectionError("the statements' pool is closed")
        CONNECTIONS_WAITING.value += 1
        try:
            if self._open < self.size:
                self._open += 1
                conn = await self._opened()
            else:
                conn = await self._waited()
        finally:
            CONNECTIONS_WAITING.value -= 1
        CONNECTIONS_IN_USE.value += 1
        return conn

    def release(self, conn: Connection) -> None:
        """Give a connection back: to the first caller waiting, or to the free ones. One
        the caller terminated (it may be half-way through an answer), or left inside a
        transaction, is not used again; its place goes to whoever waits."""
        CONNECTIONS_IN_USE.value -= 1
        if not conn.is_closed() and conn.is_in_transaction():
            conn.terminate()
        if conn.is_closed() or self._closed:
            self._close_later(conn)
            self._open -= 1
            self._hand_over_place()
            return
        while self._waiters:
            waiter, _ = self._waiters.popleft()
            if not waiter.done():  # not timed out or cancelled
                waiter.set_result(conn)
                return
        self._idle.append((conn, time.monotonic()))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(
                _IDLE_LIFETIME_SECONDS / 2, self._sweep
            )

    async def close(self) -> None:
        """Close the free connections; those in use close as they come back."""
        self._closed = True
        for timer in (self._sweeper, self._expiry):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._expiry = None
        while self._idle:
            self._close_later(self._idle.pop()[0])
            self._open -= 1
        for waiter, _ in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError("the statements' pool is closed"))
        if self._closing:
            await asyncio.wait(self._closing)

    async def _opened(self) -> Connection:
        """A new connection in a place counted in _open already; the place goes to the
        next waiter if it cannot be opened (each learns why, at once, rather than at its
        timeout)."""
        try:
            return await asyncpg.connect(
                self.dsn, timeout=self.timeout, command_timeout=3 * self.timeout
            )
        except BaseException:
            self._open -= 1
            self._hand_over_place()
            raise

    async def _waited(self) -> Connection:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Connection | None] = loop.create_future()
        deadline = loop.time() + self.timeout
        self._waiters.append((waiter, deadline))
        if self._expiry is None:
            self._expiry = loop.call_at(deadline, self._expire)
        try:
            given = await waiter
        except BaseException:
            # Cancelled just as it was given a connection or a place: pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                given = waiter.result()
                if given is None:
                    self._open -= 1
                    self._hand_over_place()
                else:
                    CONNECTIONS_IN_USE.value += 1  # release() counts it back
                    self.release(given)
            raise
        return given if given is not None else await self._opened()

    def _expire(self) -> None:
        """PoolBusy for the callers whose deadline has come; the timer again for the
        next deadline."""
        self._expiry = None
        loop = asyncio.get_running_loop()
        while self._waiters:
            waiter, deadline = self._waiters[0]
            if not waiter.done() and deadline > loop.time():
                self._expiry = loop.call_at(deadline, self._expire)
                return
            self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolBusy(f"waited {self.timeout:g} s"))

    def _hand_over_place(self) -> None:
        """A place came free: the first caller waiting opens a connection in it."""
        while self._waiters:
            waiter, _ = self._waiters.popleft()
            if not waiter.done():
                self._open += 1
                waiter.set_result(None)
                return

    async def _answers(self, conn: Connection) -> bool:
        """Whether an idle connection answers a ping; one that does not is terminated."""
        try:
            await conn.fetchrow(";", timeout=self.timeout)
            return True
        except BaseException as exc:
            conn.terminate()
            self._open -= 1
            if isinstance(
                exc, (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
            ):
                return False  # the caller tries the next, or opens one in its place
            self._hand_over_place()  # cancelled mid-ping: the place goes to a waiter
            raise

    def _sweep(self) -> None:
        """Close the connections unused for a whole _IDLE_LIFETIME_SECONDS."""
        self._sweeper = None
        old = time.monotonic() - _IDLE_LIFETIME_SECONDS
        while self._idle and self._idle[0][1] < old:
            self._close_later(self._idle.popleft()[0])
            self._open -= 1
            self._hand_over_place()
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(
                _IDLE_LIFETIME_SECONDS / 2, self._sweep
            )

    def _close_later(self, conn: Connection) -> None:
        """Say goodbye to the server (a terminated connection has gone already)."""
        if conn.is_closed():
            return
        task = asyncio.get_running_loop().create_task(self._goodbye(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _goodbye(self, conn: Connection) -> None:
        try:
            await conn.close(timeout=self.timeout)
        except Exception:  # it terminates itself on failure; nothing is lost
            conn.terminate()
