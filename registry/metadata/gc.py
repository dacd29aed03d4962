"""Queries of garbage collection. As in queries.py, each takes an open connection and the
caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import Blob, Manifest, ManifestReference

_REFERENCED = select(ManifestReference.digest).where(ManifestReference.digest == Blob.digest)
# Manifests are blobs too: one stored as this blob in any repository keeps it.
_STORED = select(Manifest.id).where(Manifest.digest == Blob.digest)


async def collectable(conn: AsyncConnection, now: datetime, limit: int) -> list[tuple[str, int]]:
    """(digest, size) of queued blobs that nothing references and no lease holds, the
    longest queued first. One range of the gc_after index, however many blobs are live."""
    rows = await conn.execute(
        select(Blob.digest, Blob.size)
        .where(
            Blob.gc_after <= now,
            or_(Blob.leased_until.is_(None), Blob.leased_until <= now),
            ~_REFERENCED.exists(),
            ~_STORED.exists(),
        )
        .order_by(Blob.gc_after)
        .limit(limit)
    )
    return [(digest, int(size)) for digest, size in rows]


async def queued(conn: AsyncConnection) -> int:
    """Blobs waiting for garbage collection to look at them, due or not."""
    return int(await conn.scalar(select(func.count()).where(Blob.gc_after.is_not(None))) or 0)
