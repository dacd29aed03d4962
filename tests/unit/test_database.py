"""The database handle: SQLite writers take turns across processes through a lock file
beside the database, and point lookups are read on the event loop's thread; PostgreSQL's
pooled connections are checked before use cheaply."""

import contextlib
import os
import shutil
import sqlite3
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import asyncpg
import pytest
from sqlalchemy import event

from registry.errors import Unavailable
from registry.metadata import manifests, pgpool, repositories, tags
from registry.metadata.database import Database
from tests.peers.postgres import PostgresServer

pytestmark = pytest.mark.anyio


async def test_sqlite_writers_of_two_handles_take_turns(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    # Two handles on one file stand for two workers: each has its own lock file descriptor.
    first, second = Database(url), Database(url)
    order: list[str] = []
    try:
        async with anyio.create_task_group() as tasks, first.writer_turn():
            order.append("first in")

            async def wait_for_turn() -> None:
                async with second.writer_turn():
                    order.append("second in")

            tasks.start_soon(wait_for_turn)
            await anyio.sleep(0.2)  # the second handle waits all this time
            order.append("first out")
        assert order == ["first in", "first out", "second in"]
        assert (tmp_path / "registry.db-writer.lock").exists()

        # A waiter cancelled while it waits gets the lock once it is free, and gives it back.
        async with anyio.create_task_group() as tasks:

            async def hold() -> None:
                async with first.writer_turn():
                    await anyio.sleep(0.3)

            tasks.start_soon(hold)
            await anyio.sleep(0.05)
            with anyio.move_on_after(0.1) as scope:
                async with second.writer_turn():
                    await anyio.sleep(1)  # the deferred cancellation lands here
            assert scope.cancelled_caught
        with anyio.fail_after(5):
            async with first.writer_turn():
                pass
    finally:
        await first.close()
        await second.close()


async def test_a_pooled_postgresql_connection_costs_no_round_trip_before_its_statement(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check before use (database._alive) sends nothing on a connection in use a
    moment ago, pings one idle for long, and replaces one the server closed without
    the request seeing an error."""
    name = f"registry_pool_{os.getpid()}"
    admin = await asyncpg.connect(postgres.admin_url)
    await admin.execute(f"CREATE DATABASE {name} TEMPLATE {postgres.template}")  # type: ignore[attr-defined]
    url = postgres.url_for(name)
    db = Database(url.replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=1)
    sent: list[str] = []
    try:
        async with db.driver() as driver:
            driver.add_query_logger(lambda record: sent.append(record.query))
            backend = await driver.fetchval("SELECT pg_backend_pid()")
        await anyio.lowlevel.checkpoint()  # the driver logs a query soon after, not in order
        sent.clear()
        for _ in range(3):
            assert await manifests.by_tag(db, "no/such", "tag") is None
        await anyio.lowlevel.checkpoint()
        assert len(sent) == 3 and ";" not in sent, sent  # the statements, nothing else

        monkeypatch.setattr(pgpool, "PING_AFTER_IDLE_SECONDS", 0.0)
        sent.clear()
        assert await manifests.by_tag(db, "no/such", "tag") is None
        await anyio.lowlevel.checkpoint()
        assert sent.count(";") == 1 and len(sent) == 2, sent
        monkeypatch.undo()

        assert await admin.fetchval(f"SELECT pg_terminate_backend({backend})") is True
        await anyio.sleep(0.2)  # the driver reads the server's goodbye
        assert await manifests.by_tag(db, "no/such", "tag") is None
        async with db.driver() as driver:
            assert await driver.fetchval("SELECT pg_backend_pid()") != backend
    finally:
        await db.close()
        await admin.execute(f"DROP DATABASE {name}")
        await admin.close()


async def _busy_pool_is_a_503(db: Database, held: int = 1) -> None:
    """Every pooled connection held past the pool's timeout: the next request is told
    the database is busy (503, Retry-After), not a server error (a 500 in a parallel
    run of test_gc_concurrency: 50 clients on 10 connections of a loaded machine).
    `held`: SQLAlchemy's connections on PostgreSQL, where the statements have a pool of
    their own."""
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(db.driver())
        for _ in range(held - 1):
            await stack.enter_async_context(db.read())
        with pytest.raises(Unavailable) as busy:
            async with db.read():
                pass
        if held > 1:  # and the statements' own
            with pytest.raises(Unavailable) as statements_busy:
                async with db.driver():
                    pass
            assert "no pooled connection came free" in statements_busy.value.text
    assert busy.value.status == 503
    assert busy.value.headers == {"Retry-After": "1"}
    assert "no pooled connection came free" in busy.value.text
    assert "database.pool_size" in busy.value.text
    async with db.read():  # free again
        pass
    async with db.driver():
        pass


async def test_a_busy_postgresql_pool_is_a_503(postgres: PostgresServer) -> None:
    name = f"registry_busy_{os.getpid()}"
    admin = await asyncpg.connect(postgres.admin_url)
    await admin.execute(f"CREATE DATABASE {name} TEMPLATE {postgres.template}")  # type: ignore[attr-defined]
    url = postgres.url_for(name).replace("postgresql://", "postgresql+asyncpg://", 1)
    db = Database(url, pool_size=1, timeout_seconds=0.3)
    try:
        # One for the statements, two for the rest (database.py).
        await _busy_pool_is_a_503(db, held=3)
    finally:
        await db.close()
        await admin.execute(f"DROP DATABASE {name}")
        await admin.close()


async def test_a_statement_cut_short_leaves_no_connection_behind(
    postgres: PostgresServer,
) -> None:
    """A request that ends while its statement runs (a client gone, a timeout): the
    connection may still be reading the answer, so it is closed, not pooled again; the
    next statement gets a new one and answers at once."""
    db = Database(
        postgres.url_for("postgres").replace("postgresql://", "postgresql+asyncpg://"), pool_size=1
    )
    try:
        async with db.driver() as driver:
            backend = await driver.fetchval("SELECT pg_backend_pid()")
        with anyio.move_on_after(0.2) as scope:
            async with db.driver() as driver:
                await driver.fetch("SELECT pg_sleep(5)")
        assert scope.cancelled_caught
        with anyio.fail_after(2):
            async with db.driver() as driver:
                assert await driver.fetchval("SELECT pg_backend_pid()") != backend
    finally:
        await db.close()


async def test_a_busy_sqlite_pool_is_a_503(tmp_path: Path, sqlite_template: Path) -> None:
    shutil.copy(sqlite_template, tmp_path / "registry.db")
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}", pool_size=1)
    # SQLite's pool waits SQLAlchemy's default 30 s (its writers queue behind one lock).
    db.engine.sync_engine.pool._timeout = 0.3  # type: ignore[attr-defined]
    try:
        await _busy_pool_is_a_503(db)
    finally:
        await db.close()


async def test_sqlite_point_lookups_are_read_on_the_loop_thread_and_see_every_commit(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """Database.read_now: no pooled connection (aiosqlite's thread) for a point lookup,
    the commit just made through the pool is seen, and a database that answers busy
    (another process holds it exclusively) sends the lookup through the pool, which
    waits for it, rather than failing."""
    path = tmp_path / "registry.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    checkouts: list[object] = []
    event.listen(db.engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args))
    try:
        assert await tags.version(db, "team/app") is None
        assert checkouts == []
        async with db.write() as conn:
            repository_id = await repositories.ensure_repository(conn, "team/app")
        checkouts.clear()
        found = await tags.version(db, "team/app")
        assert found is not None and found[0] == repository_id
        assert checkouts == []

        # Another process holds the file exclusively, before this handle opens it.
        await db.close()
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE repositories SET tags_version = 7 WHERE id = ?", (repository_id,))
        db = Database(f"sqlite+aiosqlite:///{path}")
        event.listen(db.engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args))
        checkouts.clear()
        assert db.read_now("SELECT id FROM repositories", []) is None  # busy: no wait

        def release() -> None:
            time.sleep(0.3)
            holder.execute("COMMIT")
            holder.close()

        started = time.monotonic()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(anyio.to_thread.run_sync, release)
            assert await tags.version(db, "team/app") == (repository_id, 7)
        assert time.monotonic() - started >= 0.3
        assert len(checkouts) == 1  # the pool's connection waited, in its own thread
    finally:
        await db.close()
