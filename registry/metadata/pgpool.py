"""The PostgreSQL connections the statements of the hot paths run on (statements.py):
asyncpg's own pool, beside SQLAlchemy's, which serves everything else.

Through SQLAlchemy's pool a checkout and return took 28 us of CPU with nothing to wait
for (greenlet switches, its events), and under load, waiting for a connection through
its queue and timeouts cost more than the manifest GET's query: a worker answered 3,600
GETs a second on PostgreSQL through it, 5,000 through this (py-spy, benchmarks/README.md).
Connections are opened when first needed and closed after a minute unused; returned as
they are (asyncpg's reset is a round trip, and a statement here leaves nothing open to
reset: a transaction ends with its block, or the connection is discarded).

A connection unused for PING_AFTER_IDLE_SECONDS is pinged before use, in case its peer
vanished without closing it (asyncpg replaces one the server closed by itself).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from registry.metrics import CONNECTIONS_IN_USE, CONNECTIONS_WAITING

# A connection unused for longer is pinged before use.
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_LIFETIME_SECONDS = 60.0


class PoolBusy(Exception):
    """No connection came free within the pool's timeout."""


async def _as_returned(connection: Any) -> None:
    """In place of asyncpg's reset (RESET ALL and more, a round trip on every return)."""


class StatementPool:
    def __init__(self, dsn: str, size: int, timeout_seconds: float) -> None:
        self.dsn = dsn
        self.size = size
        self.timeout = timeout_seconds
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        # Server process id -> when its connection was last returned (monotonic).
        self._returned: dict[int, float] = {}

    async def _opened(self) -> asyncpg.Pool:
        # Made on first use, in the event loop that uses it (a pool belongs to one).
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=0,
                    max_size=self.size,
                    max_inactive_connection_lifetime=_IDLE_LIFETIME_SECONDS,
                    reset=_as_returned,
                    timeout=self.timeout,
                    command_timeout=3 * self.timeout,
                )
            return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A connection from the pool. The caller terminates one it must not pool again
        (it may still be reading the rest of a failed answer); asyncpg replaces it."""
        pool = self._pool or await self._opened()
        conn = await self._checked_out(pool)
        backend = conn.get_server_pid()  # not to be asked once terminated
        CONNECTIONS_IN_USE.value += 1
        try:
            yield conn
        finally:
            CONNECTIONS_IN_USE.value -= 1
            self._returned[backend] = time.monotonic()
            await pool.release(conn)  # nothing to do for one terminated

    async def _checked_out(self, pool: asyncpg.Pool) -> Any:
        """A connection that answered lately, or answers a ping now: one that does not
        is closed, and the next is tried (asyncpg opens a new one in its place)."""
        for _ in range(self.size + 1):
            CONNECTIONS_WAITING.value += 1
            try:
                conn = await pool.acquire(timeout=self.timeout)
            except TimeoutError as exc:
                raise PoolBusy(f"waited {self.timeout:g} s") from exc
            finally:
                CONNECTIONS_WAITING.value -= 1
            returned = self._returned.get(conn.get_server_pid())
            if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
                return conn  # new, or in use a moment ago
            try:
                await conn.fetchrow(";", timeout=self.timeout)
                return conn
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()
                await pool.release(conn)
            finally:
                self._forget_closed()
        raise ConnectionError(f"none of {self.size + 1} pooled connections answered a ping")

    def _forget_closed(self) -> None:
        if len(self._returned) > 4 * self.size:  # of connections closed since
            now = time.monotonic()
            self._returned = {
                pid: at for pid, at in self._returned.items() if now - at < _IDLE_LIFETIME_SECONDS
            }

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), self.timeout)
            except TimeoutError:
                self._pool.terminate()
