"""Queries of `registry check`, which compares the blobs table with the storage. Each
takes an open connection and the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import Blob, Manifest, ManifestReference, Repository, now
from registry.metadata.statements import dialect_insert, lexical


async def blobs_after(conn: AsyncConnection, after: str, limit: int) -> list[tuple[str, int]]:
    """(digest, size) of the blob rows after `after`, in byte order (the storage's)."""
    ordered = lexical(conn, Blob.digest)
    rows = await conn.execute(
        select(Blob.digest, Blob.size).where(ordered > after).order_by(ordered).limit(limit)
    )
    return [(digest, int(size)) for digest, size in rows]


async def manifest_content(conn: AsyncConnection, digest: str) -> bytes | None:
    """A manifest's bytes, from any repository that holds it (they are the same)."""
    content = await conn.scalar(select(Manifest.content).where(Manifest.digest == digest).limit(1))
    return None if content is None else bytes(content)


async def users_of(conn: AsyncConnection, digest: str, limit: int = 5) -> list[str]:
    """`repository@manifest` of manifests that reference the blob (for the report)."""
    rows = await conn.execute(
        select(Repository.name, Manifest.digest)
        .join(Manifest, Manifest.repository_id == Repository.id)
        .join(ManifestReference, ManifestReference.manifest_id == Manifest.id)
        .where(ManifestReference.digest == digest)
        .order_by(Repository.name, Manifest.digest)
        .limit(limit)
    )
    return [f"{name}@{manifest}" for name, manifest in rows]


async def adopt(conn: AsyncConnection, digest: str, size: int, lease_end: datetime) -> bool:
    """Give bytes without a row a row, queued for garbage collection when the lease ends
    (the lease covers a push placing those bytes right now). False if a row appeared."""
    result = await conn.execute(
        dialect_insert(conn, Blob)
        .values(
            digest=digest, size=size, created_at=now(), leased_until=lease_end, gc_after=lease_end
        )
        .on_conflict_do_nothing()
    )
    return bool(result.rowcount)


async def row_exists(conn: AsyncConnection, digest: str) -> bool:
    return await conn.scalar(select(Blob.digest).where(Blob.digest == digest)) is not None
