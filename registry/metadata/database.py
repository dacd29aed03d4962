"""The database handle: an async engine with read and write connections.

SQLite runs in WAL mode with a busy timeout, and write transactions start with
BEGIN IMMEDIATE so that two writers queue on the lock instead of failing when a
read transaction tries to upgrade. Reads run in autocommit (no BEGIN round trip).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from registry.errors import Unavailable

_DB_ERRORS = (OperationalError, InterfaceError)


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {"echo": echo, "pool_pre_ping": not self.is_sqlite}
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
            options.update(pool_size=pool_size, max_overflow=pool_size)
        self.engine = create_async_engine(url, **options)
        self._writer = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        conn = await self._connect()
        try:
            yield conn
        except _DB_ERRORS as exc:
            raise _unavailable(exc) from exc
        finally:
            await conn.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back on an error."""
        if self._writer is None:
            async with self._transaction() as conn:
                yield conn
            return
        # SQLite takes one writer at a time. Queued here, this process's writers wait
        # their turn without SQLite's busy handler, which sleeps in growing steps.
        async with self._writer, self._transaction() as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        conn = await self._connect()
        try:
            await conn.execution_options(registry_write=True)
            async with conn.begin():
                yield conn
        except _DB_ERRORS as exc:
            raise _unavailable(exc) from exc
        finally:
            await conn.close()

    async def ping(self) -> None:
        """Raise Unavailable unless the database answers a trivial query."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def _connect(self) -> AsyncConnection:
        conn = self.engine.connect()
        try:
            return await conn.start()
        except (*_DB_ERRORS, OSError) as exc:
            # asyncpg lets a refused connection through as a bare OSError.
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        await self.engine.dispose()


def _unavailable(exc: Exception) -> Unavailable:
    reason = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
    return Unavailable(
        message=f"metadata database unavailable ({reason}); check that it is running"
    )


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let us issue BEGIN ourselves (see _sqlite_begin) instead of the driver's guesswork.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "busy_timeout=30000",
        "foreign_keys=ON",
        "synchronous=NORMAL",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get("registry_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
