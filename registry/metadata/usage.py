"""Queries of storage usage and quotas. As in queries.py, each takes an open connection
and the caller owns the transaction. The totals are kept by triggers (migration 0011);
these read them, or sum over one namespace's or repository's rows."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.gc import REFERENCED, STORED
from registry.metadata.models import (
    Blob,
    NamespacePolicy,
    NamespaceUsage,
    Repository,
    RepositoryBlob,
    Upload,
)
from registry.metadata.models import now as now_utc
from registry.metadata.queries import dialect_insert


async def quota_state(conn: AsyncConnection, namespace: str) -> tuple[int, int | None]:
    """(bytes used, quota or None) of a namespace."""
    used = await conn.scalar(
        select(NamespaceUsage.bytes).where(NamespaceUsage.namespace == namespace)
    )
    quota = await conn.scalar(
        select(NamespacePolicy.quota_bytes).where(NamespacePolicy.namespace == namespace)
    )
    return int(used or 0), None if quota is None else int(quota)


async def in_namespace(conn: AsyncConnection, namespace: str, digest: str) -> bool:
    """Whether a repository of the namespace links the blob already."""
    found = await conn.scalar(
        select(RepositoryBlob.digest)
        .join(Repository, Repository.id == RepositoryBlob.repository_id)
        .where(Repository.namespace == namespace, RepositoryBlob.digest == digest)
        .limit(1)
    )
    return found is not None


async def lock_namespace(conn: AsyncConnection, namespace: str) -> None:
    """Take the namespace's usage row, as a blob upload's link does (hot.py)."""
    stmt = dialect_insert(conn, NamespaceUsage).values(namespace=namespace, bytes=0)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[NamespaceUsage.namespace], set_={"bytes": NamespaceUsage.bytes}
        )
    )


async def namespaces(conn: AsyncConnection) -> list[tuple[str, int, int]]:
    """(namespace, bytes, repositories) of every namespace that holds something."""
    counts = (
        select(Repository.namespace, func.count().label("n"))
        .group_by(Repository.namespace)
        .subquery()
    )
    rows = await conn.execute(
        select(NamespaceUsage.namespace, NamespaceUsage.bytes, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.namespace == NamespaceUsage.namespace)
        .order_by(NamespaceUsage.namespace)
    )
    return [(n, int(b), int(c)) for n, b, c in rows if b or c]


async def repositories(conn: AsyncConnection, namespace: str) -> list[tuple[int, str, int]]:
    rows = await conn.execute(
        select(Repository.id, Repository.name, Repository.bytes)
        .where(Repository.namespace == namespace)
        .order_by(Repository.name)
    )
    return [(int(i), n, int(b)) for i, n, b in rows]


async def shared_bytes(conn: AsyncConnection, repository_id: int) -> int:
    """Bytes of the repository's blobs that another repository links too."""
    other = select(RepositoryBlob.digest).where(
        RepositoryBlob.digest == Blob.digest, RepositoryBlob.repository_id != repository_id
    )
    mine = select(RepositoryBlob.digest).where(RepositoryBlob.repository_id == repository_id)
    total = await conn.scalar(
        select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.digest.in_(mine), other.exists())
    )
    return int(total or 0)


async def reclaimable(conn: AsyncConnection, namespace: str | None = None) -> int:
    """Bytes a collection pass would free now (of blobs the namespace links, if given)."""
    moment = now_utc()
    query = select(func.coalesce(func.sum(Blob.size), 0)).where(
        Blob.gc_after <= moment,
        or_(Blob.leased_until.is_(None), Blob.leased_until <= moment),
        ~REFERENCED.exists(),
        ~STORED.exists(),
    )
    if namespace is not None:
        linked = (
            select(RepositoryBlob.digest)
            .join(Repository, Repository.id == RepositoryBlob.repository_id)
            .where(Repository.namespace == namespace, RepositoryBlob.digest == Blob.digest)
        )
        query = query.where(linked.exists())
    return int(await conn.scalar(query) or 0)


async def total_bytes(conn: AsyncConnection) -> int:
    """Every blob stored, once."""
    return int(await conn.scalar(select(func.coalesce(func.sum(Blob.size), 0))) or 0)


async def uploads(conn: AsyncConnection, namespace: str | None = None) -> int:
    """Upload sessions in progress (of the namespace's repositories, if given)."""
    query = select(func.count()).select_from(Upload)
    if namespace is not None:
        mine = Upload.repository.startswith(f"{namespace}/")
        if namespace == "library":  # names of one component are library's
            mine = or_(mine, ~Upload.repository.contains("/"))
        query = query.where(mine)
    return int(await conn.scalar(query) or 0)
