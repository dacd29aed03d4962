"""Repositories: the rows the other resources hang on. A repository is made by the
first push into it, and goes with its last manifest (manifests.delete_repository)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import Repository, now
from registry.metadata.statements import Statement, dialect_insert, lexical
from registry.names import namespace_of

ID = Statement("repository_id", "SELECT id FROM repositories WHERE name = :repository")
ADD = Statement(
    "add_repository",
    "INSERT INTO repositories (name, namespace, created_at) "
    "VALUES (:repository, :namespace, :now) ON CONFLICT DO NOTHING",
)


async def repository_id(conn: AsyncConnection, name: str) -> int | None:
    return await conn.scalar(select(Repository.id).where(Repository.name == name))


async def ensure_repository(conn: AsyncConnection, name: str) -> int:
    await conn.execute(
        dialect_insert(conn, Repository)
        .values(name=name, namespace=namespace_of(name), created_at=now())
        .on_conflict_do_nothing()
    )
    found = await repository_id(conn, name)
    assert found is not None
    return found


async def list_repositories(
    conn: AsyncConnection, last: str | None, limit: int, namespaces: Collection[str] | None
) -> list[str]:
    query = select(Repository.name).order_by(lexical(conn, Repository.name)).limit(limit)
    if namespaces is not None:
        query = query.where(Repository.namespace.in_(namespaces))
    if last:
        query = query.where(lexical(conn, Repository.name) > last)
    return list((await conn.scalars(query)).all())
