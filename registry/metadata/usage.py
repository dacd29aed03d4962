"""Queries of storage usage and quotas. Each takes an open connection
and the caller owns the transaction. A namespace's usage is kept by triggers as blobs are
linked and unlinked (migration 0011): its folded total plus its deltas not folded yet."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.gc import collectable_now
from registry.metadata.models import (
    Blob,
    NamespaceBlob,
    NamespacePolicy,
    NamespaceUsage,
    Repository,
    RepositoryBlob,
    Upload,
    UsageDelta,
)
from registry.metadata.statements import dialect_insert


async def used(conn: AsyncConnection, namespace: str) -> int:
    folded = await conn.scalar(
        select(NamespaceUsage.bytes).where(NamespaceUsage.namespace == namespace)
    )
    pending = await conn.scalar(
        select(func.coalesce(func.sum(UsageDelta.bytes), 0)).where(
            UsageDelta.namespace == namespace
        )
    )
    return int(folded or 0) + int(pending or 0)


async def quota_state(conn: AsyncConnection, namespace: str) -> tuple[int, int | None]:
    """(bytes used, quota or None) of a namespace."""
    quota = await conn.scalar(
        select(NamespacePolicy.quota_bytes).where(NamespacePolicy.namespace == namespace)
    )
    return await used(conn, namespace), None if quota is None else int(quota)


async def in_namespace(conn: AsyncConnection, namespace: str, digest: str) -> bool:
    """Whether a repository of the namespace links the blob already."""
    found = await conn.scalar(
        select(NamespaceBlob.links).where(
            NamespaceBlob.namespace == namespace, NamespaceBlob.digest == digest
        )
    )
    return found is not None


async def lock_quota(conn: AsyncConnection, namespace: str) -> None:
    """Take the namespace's policy row if it has a quota, as a blob upload does
    (blobs.LOCK_QUOTA)."""
    await conn.execute(
        update(NamespacePolicy)
        .where(NamespacePolicy.namespace == namespace, NamespacePolicy.quota_bytes.is_not(None))
        .values(quota_bytes=NamespacePolicy.quota_bytes)
    )


async def fold(conn: AsyncConnection) -> int:
    """Fold the deltas into the namespaces' totals; returns how many. Only the rows this
    DELETE removes are added, so a delta committed meanwhile waits for the next fold."""
    removed = await conn.execute(
        delete(UsageDelta).returning(UsageDelta.namespace, UsageDelta.bytes)
    )
    sums: dict[str, int] = defaultdict(int)
    count = 0
    for namespace, size in removed:
        sums[namespace] += int(size)
        count += 1
    for namespace in sorted(sums):
        stmt = dialect_insert(conn, NamespaceUsage).values(
            namespace=namespace, bytes=sums[namespace]
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[NamespaceUsage.namespace],
                set_={"bytes": NamespaceUsage.bytes + stmt.excluded.bytes},
            )
        )
    return count


async def namespaces(conn: AsyncConnection) -> list[tuple[str, int, int]]:
    """(namespace, bytes, repositories) of every namespace that holds something."""
    totals: dict[str, int] = defaultdict(int)
    for namespace, size in await conn.execute(
        select(NamespaceUsage.namespace, NamespaceUsage.bytes)
    ):
        totals[namespace] += int(size)
    pending = select(UsageDelta.namespace, func.sum(UsageDelta.bytes)).group_by(
        UsageDelta.namespace
    )
    for namespace, size in await conn.execute(pending):
        totals[namespace] += int(size)
    counts = dict(
        (n, int(c))
        for n, c in await conn.execute(
            select(Repository.namespace, func.count()).group_by(Repository.namespace)
        )
    )
    names = sorted(set(totals) | set(counts))
    return [
        (n, totals.get(n, 0), counts.get(n, 0)) for n in names if totals.get(n) or counts.get(n)
    ]


async def repositories(conn: AsyncConnection, namespace: str) -> list[tuple[int, str, int]]:
    """(id, name, bytes of the blobs it links) of the namespace's repositories."""
    sizes = (
        select(RepositoryBlob.repository_id, func.sum(Blob.size).label("size"))
        .join(Blob, Blob.digest == RepositoryBlob.digest)
        .group_by(RepositoryBlob.repository_id)
        .subquery()
    )
    rows = await conn.execute(
        select(Repository.id, Repository.name, func.coalesce(sizes.c.size, 0))
        .outerjoin(sizes, sizes.c.repository_id == Repository.id)
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


async def reclaimable(conn: AsyncConnection, moment: datetime, namespace: str | None = None) -> int:
    """Bytes a collection pass would free at `moment` (of blobs the namespace links, if
    given)."""
    query = select(func.coalesce(func.sum(Blob.size), 0)).where(*collectable_now(moment))
    if namespace is not None:
        linked = select(NamespaceBlob.digest).where(
            NamespaceBlob.namespace == namespace, NamespaceBlob.digest == Blob.digest
        )
        query = query.where(linked.exists())
    return int(await conn.scalar(query) or 0)  # PostgreSQL sums big integers as numeric


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
