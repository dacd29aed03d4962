"""The statements' own pool of PostgreSQL connections (registry/metadata/pgpool.py): never
more than its size open, callers beyond it served in turn or told the pool is busy, and
no connection or place lost when a caller is cancelled at the worst moment, when a
connection breaks, or when none can be opened."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from registry.metadata import pgpool
from registry.metadata.pgpool import PoolBusy, StatementPool
from tests.peers.postgres import PostgresServer

pytestmark = pytest.mark.anyio


class Opened:
    """The pool's connections as PostgreSQL sees them, by their application_name."""

    def __init__(self, postgres: PostgresServer) -> None:
        self.name = f"pgpool-{uuid.uuid4().hex[:12]}"
        self.admin_url = postgres.admin_url
        self.dsn = f"{self.admin_url}?application_name={self.name}"

    async def count(self) -> int:
        admin = await asyncpg.connect(self.admin_url)
        try:
            found: int = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", self.name
            )
            return found
        finally:
            await admin.close()


@pytest.fixture
async def opened(postgres: PostgresServer) -> AsyncIterator[Opened]:
    yield Opened(postgres)


async def test_callers_beyond_its_size_take_turns_on_its_connections(opened: Opened) -> None:
    pool = StatementPool(opened.dsn, size=3, timeout_seconds=10)
    in_use = peak = 0

    async def use() -> None:
        nonlocal in_use, peak
        conn = await pool.acquire()
        in_use += 1
        peak = max(peak, in_use)
        try:
            assert await conn.fetchval("SELECT 1 FROM pg_sleep(0.005)") == 1
        finally:
            in_use -= 1
            pool.release(conn)

    try:
        await asyncio.gather(*(use() for _ in range(60)))
        assert peak == 3
        assert await opened.count() == 3
        assert pool._open == 3 and len(pool._idle) == 3 and not pool._waiters
    finally:
        await pool.close()
    assert await opened.count() == 0


async def test_a_caller_cancelled_as_it_is_given_a_connection_passes_it_on(
    opened: Opened,
) -> None:
    """The worst interleaving: release() hands the connection to a waiter's future, and
    the waiter's task is cancelled before it runs (a client that went away)."""
    pool = StatementPool(opened.dsn, size=1, timeout_seconds=5)
    try:
        conn = await pool.acquire()
        cancelled = asyncio.create_task(pool.acquire())
        behind = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0.01)  # both wait
        pool.release(conn)  # to the first waiter, whose task has not run since
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await asyncio.wait_for(behind, 1) is conn
        pool.release(conn)
        assert pool._open == 1 and not pool._waiters
    finally:
        await pool.close()


async def test_a_broken_connection_gives_its_place_to_a_waiter(opened: Opened) -> None:
    """A connection terminated by its caller (a statement cancelled half-way) is not
    used again: the first waiter opens a new one in its place, even when that waiter is
    cancelled just then and passes the place on."""
    pool = StatementPool(opened.dsn, size=1, timeout_seconds=5)
    try:
        conn = await pool.acquire()
        backend = conn.get_server_pid()
        cancelled = asyncio.create_task(pool.acquire())
        behind = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0.01)
        conn.terminate()
        pool.release(conn)  # a place, to the first waiter
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        fresh = await asyncio.wait_for(behind, 5)
        assert fresh.get_server_pid() != backend
        pool.release(fresh)
        assert pool._open == 1
        assert await opened.count() == 1
    finally:
        await pool.close()


async def test_a_connection_left_in_a_transaction_is_not_pooled(opened: Opened) -> None:
    pool = StatementPool(opened.dsn, size=2, timeout_seconds=5)
    try:
        conn = await pool.acquire()
        await conn.execute("BEGIN")
        pool.release(conn)
        assert conn.is_closed()
        assert pool._open == 0 and not pool._idle
        again = await pool.acquire()
        assert again is not conn and not again.is_in_transaction()
        pool.release(again)
    finally:
        await pool.close()


async def test_a_full_pool_tells_the_caller_at_its_deadline_and_serves_the_next(
    opened: Opened,
) -> None:
    pool = StatementPool(opened.dsn, size=1, timeout_seconds=0.3)
    try:
        conn = await pool.acquire()
        started = time.monotonic()
        first = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0.2)
        second = asyncio.create_task(pool.acquire())  # its deadline comes 0.2 s later
        with pytest.raises(PoolBusy):
            await first
        assert 0.25 < time.monotonic() - started < 1.0
        pool.release(conn)  # to the second, still within its deadline
        assert await asyncio.wait_for(second, 1) is conn
        pool.release(conn)
    finally:
        await pool.close()


async def test_when_no_connection_can_be_opened_every_caller_learns_at_once(
    opened: Opened,
) -> None:
    with_listener = opened.dsn.split("?")[0]
    nowhere = with_listener.rsplit(":", 1)[0] + ":1/postgres"  # nothing listens on port 1
    pool = StatementPool(nowhere, size=1, timeout_seconds=5)
    started = time.monotonic()
    try:
        failed = await asyncio.gather(*(pool.acquire() for _ in range(3)), return_exceptions=True)
        assert all(isinstance(error, OSError) for error in failed), failed
        assert time.monotonic() - started < 2  # not each at its 5 s deadline
        assert pool._open == 0 and not [w for w, _ in pool._waiters if not w.done()]
    finally:
        await pool.close()


async def test_connections_unused_for_a_while_are_closed(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgpool, "_IDLE_LIFETIME_SECONDS", 0.2)
    pool = StatementPool(opened.dsn, size=2, timeout_seconds=5)
    try:
        first, second = await pool.acquire(), await pool.acquire()
        pool.release(first)
        pool.release(second)
        assert await opened.count() == 2
        await asyncio.sleep(0.6)
        assert await opened.count() == 0
        assert pool._open == 0
        conn = await pool.acquire()  # opened again when needed
        assert await conn.fetchval("SELECT 1") == 1
        pool.release(conn)
    finally:
        await pool.close()


async def test_closing_the_pool_closes_what_is_free_now_and_what_comes_back(
    opened: Opened,
) -> None:
    pool = StatementPool(opened.dsn, size=2, timeout_seconds=5)
    held, free = await pool.acquire(), await pool.acquire()
    pool.release(free)
    await pool.close()
    assert free.is_closed() and not held.is_closed()
    pool.release(held)
    await asyncio.sleep(0.2)
    assert held.is_closed()
    assert await opened.count() == 0
    with pytest.raises(ConnectionError):
        await pool.acquire()
