"""The database handle: SQLite writers take turns across processes through a lock file
beside the database; PostgreSQL's pooled connections are checked before use cheaply."""

import os
from pathlib import Path

import anyio
import anyio.lowlevel
import asyncpg
import pytest

from registry.metadata import database
from registry.metadata.database import Database
from registry.metadata.hot import HotQueries
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
    hot = HotQueries(db)
    sent: list[str] = []
    try:
        async with db.driver() as driver:
            driver.add_query_logger(lambda record: sent.append(record.query))
            backend = await driver.fetchval("SELECT pg_backend_pid()")
        await anyio.lowlevel.checkpoint()  # the driver logs a query soon after, not in order
        sent.clear()
        for _ in range(3):
            assert await hot.manifest_by_tag("no/such", "tag") is None
        await anyio.lowlevel.checkpoint()
        assert len(sent) == 3 and ";" not in sent, sent  # the statements, nothing else

        monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
        sent.clear()
        assert await hot.manifest_by_tag("no/such", "tag") is None
        await anyio.lowlevel.checkpoint()
        assert sent.count(";") == 1 and len(sent) == 2, sent
        monkeypatch.undo()

        assert await admin.fetchval(f"SELECT pg_terminate_backend({backend})") is True
        await anyio.sleep(0.2)  # the driver reads the server's goodbye
        assert await hot.manifest_by_tag("no/such", "tag") is None
        async with db.driver() as driver:
            assert await driver.fetchval("SELECT pg_backend_pid()") != backend
    finally:
        await db.close()
        await admin.execute(f"DROP DATABASE {name}")
        await admin.close()
