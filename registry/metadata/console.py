"""Queries of console sessions (migration 0013). Each takes an open
connection and the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import ConsoleSession, utc


async def add(
    conn: AsyncConnection, key: str, account: str, credential: str, csrf: str, expires: datetime
) -> None:
    await conn.execute(
        insert(ConsoleSession).values(
            id=key,
            account=account,
            credential=credential,
            csrf=csrf,
            created_at=datetime.now(expires.tzinfo),
            expires_at=expires,
        )
    )


async def find(conn: AsyncConnection, key: str) -> tuple[str, str, str, datetime] | None:
    """(account, credential, csrf, expires) of a session."""
    row = (
        await conn.execute(
            select(
                ConsoleSession.account,
                ConsoleSession.credential,
                ConsoleSession.csrf,
                ConsoleSession.expires_at,
            ).where(ConsoleSession.id == key)
        )
    ).first()
    return (row[0], row[1], row[2], utc(row[3])) if row else None


async def remove(conn: AsyncConnection, key: str) -> None:
    await conn.execute(delete(ConsoleSession).where(ConsoleSession.id == key))


async def remove_expired(conn: AsyncConnection, now: datetime) -> None:
    await conn.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
