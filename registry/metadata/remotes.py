"""Replication remotes: other registries, a namespace's or the registry's. Each query
takes an open connection and the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import Remote, now
from registry.metadata.statements import insert_new


@dataclass(frozen=True, slots=True)
class RemoteRow:
    id: int
    namespace: str  # empty: an admin's, for every namespace
    name: str
    url: str
    username: str | None
    secret: str | None  # sealed
    verify_tls: bool
    ca_pem: str | None
    created_at: datetime


_COLUMNS = (
    Remote.id,
    Remote.namespace,
    Remote.name,
    Remote.url,
    Remote.username,
    Remote.secret,
    Remote.verify_tls,
    Remote.ca_pem,
    Remote.created_at,
)


async def insert(
    conn: AsyncConnection,
    namespace: str,
    name: str,
    url: str,
    username: str | None,
    secret: str | None,
    verify_tls: bool,
    ca_pem: str | None,
) -> int | None:
    """The new remote's id, or None if the namespace has one of that name."""
    return await insert_new(
        conn,
        Remote,
        namespace=namespace,
        name=name,
        url=url,
        username=username,
        secret=secret,
        verify_tls=verify_tls,
        ca_pem=ca_pem,
        created_at=now(),
    )


async def find(conn: AsyncConnection, namespace: str, name: str) -> RemoteRow | None:
    query = select(*_COLUMNS).where(Remote.namespace == namespace, Remote.name == name)
    row = (await conn.execute(query)).first()
    return RemoteRow(*row) if row else None


async def listed(conn: AsyncConnection, namespace: str | None) -> list[RemoteRow]:
    """A namespace's remotes ('' for the registry's), or every remote (None)."""
    query = select(*_COLUMNS).order_by(Remote.namespace, Remote.name)
    if namespace is not None:
        query = query.where(Remote.namespace == namespace)
    return [RemoteRow(*row) for row in await conn.execute(query)]


async def remove(conn: AsyncConnection, namespace: str, name: str) -> bool:
    result = await conn.execute(
        delete(Remote).where(Remote.namespace == namespace, Remote.name == name)
    )
    return result.rowcount > 0


async def remove_all(conn: AsyncConnection, namespace: str) -> None:
    """A namespace's remotes, when it is removed: one made later with its name must not
    inherit them (nor their credentials)."""
    await conn.execute(delete(Remote).where(Remote.namespace == namespace))
