"""Totals kept in the database, summed over every worker and replica: the mirror's and
garbage collection's. The caller owns the transaction, so a count can commit with the
change it counts."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import Counter
from registry.metadata.statements import dialect_insert


async def add_counters(conn: AsyncConnection, increments: Mapping[str, int]) -> None:
    # In name order, so that two transactions adding to the same counters cannot
    # deadlock on PostgreSQL.
    for name, amount in sorted(increments.items()):
        if not amount:
            continue
        stmt = dialect_insert(conn, Counter).values(name=name, value=amount)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[Counter.name], set_={"value": Counter.value + stmt.excluded.value}
            )
        )


async def counters(conn: AsyncConnection, prefix: str = "") -> dict[str, int]:
    rows = await conn.execute(
        select(Counter.name, Counter.value).where(Counter.name.startswith(prefix))
    )
    return {name: int(value) for name, value in rows.all()}


async def lock_counter(conn: AsyncConnection, name: str) -> None:
    """Hold the counter's row until the transaction ends: work that must not run in two
    replicas at once takes it first, and the next one waits, then sees what the first
    committed. (On SQLite the writer lock orders them anyway.)"""
    await conn.execute(
        dialect_insert(conn, Counter).values(name=name, value=0).on_conflict_do_nothing()
    )
    await conn.execute(select(Counter.value).where(Counter.name == name).with_for_update())
