"""SQLite writers take turns across processes through a lock file beside the database."""

from pathlib import Path

import anyio
import pytest

from registry.metadata.database import Database

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
