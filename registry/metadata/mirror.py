"""Queries of the pull-through mirror: tag freshness, single-flight blob fetches shared by
replicas, and counters. Each takes an open connection; the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.manifests import COLUMNS, StoredManifest
from registry.metadata.models import (
    Blob,
    BlobFetch,
    Manifest,
    ManifestReference,
    MirrorUpstream,
    Repository,
    Tag,
    now,
    utc,
)
from registry.metadata.statements import dialect_insert


@dataclass(frozen=True, slots=True)
class CachedTag:
    manifest: StoredManifest
    # When the upstream last confirmed (or set) what the tag points at.
    checked_at: datetime


@dataclass(frozen=True, slots=True)
class FetchRow:
    upload_id: str
    size: int | None
    written: int
    heartbeat_at: datetime


async def cached_tag(conn: AsyncConnection, repository: str, tag: str) -> CachedTag | None:
    row = (
        await conn.execute(
            select(*COLUMNS, Tag.updated_at, Manifest.repository_id, Manifest.id)
            .join(Tag, Tag.manifest_id == Manifest.id)
            .join(Repository, Repository.id == Tag.repository_id)
            .where(Repository.name == repository, Tag.name == tag)
        )
    ).first()
    if row is None:
        return None
    # With its ids, so that the pull is counted (and keeps it from expiring).
    return CachedTag(StoredManifest(row[0], row[1], row[2], row[4], row[5]), utc(row[3]))


async def touch_tag(conn: AsyncConnection, repository: str, tag: str) -> None:
    repo = select(Repository.id).where(Repository.name == repository).scalar_subquery()
    await conn.execute(
        update(Tag).where(Tag.repository_id == repo, Tag.name == tag).values(updated_at=now())
    )


async def stored_blob_size(conn: AsyncConnection, digest: str) -> int | None:
    """The size of a blob the registry holds, whichever repository links it."""
    return await conn.scalar(select(Blob.size).where(Blob.digest == digest))


# Blob fetches


async def claim_fetch(
    conn: AsyncConnection, digest: str, upload_id: str, stale_before: datetime
) -> str | None:
    """Make this caller the fetcher of `digest`. Returns None when it now is; otherwise the
    upload id of the live fetch to join. A fetch whose heartbeat is older than
    `stale_before` is taken over."""
    inserted = await conn.execute(
        dialect_insert(conn, BlobFetch)
        .values(digest=digest, upload_id=upload_id, written=0, heartbeat_at=now())
        .on_conflict_do_nothing()
    )
    if inserted.rowcount:
        return None
    taken = await conn.execute(
        update(BlobFetch)
        .where(BlobFetch.digest == digest, BlobFetch.heartbeat_at < stale_before)
        .values(upload_id=upload_id, size=None, written=0, heartbeat_at=now())
    )
    if taken.rowcount:
        return None
    current = await conn.scalar(select(BlobFetch.upload_id).where(BlobFetch.digest == digest))
    # Gone in between (the fetch just ended): report it as ended, under no upload.
    return current or ""


async def fetch_row(conn: AsyncConnection, digest: str) -> FetchRow | None:
    row = (
        await conn.execute(
            select(
                BlobFetch.upload_id, BlobFetch.size, BlobFetch.written, BlobFetch.heartbeat_at
            ).where(BlobFetch.digest == digest)
        )
    ).first()
    return FetchRow(row[0], row[1], row[2], utc(row[3])) if row else None


async def report_fetch(
    conn: AsyncConnection, digest: str, upload_id: str, size: int | None, written: int
) -> bool:
    """Record progress and that the fetcher lives; False if the fetch is no longer its own."""
    result = await conn.execute(
        update(BlobFetch)
        .where(BlobFetch.digest == digest, BlobFetch.upload_id == upload_id)
        .values(size=size, written=written, heartbeat_at=now())
    )
    return bool(result.rowcount)


async def end_fetch(conn: AsyncConnection, digest: str, upload_id: str) -> None:
    await conn.execute(
        delete(BlobFetch).where(BlobFetch.digest == digest, BlobFetch.upload_id == upload_id)
    )


async def cache_summary(conn: AsyncConnection) -> tuple[int, int, int]:
    """Repositories, tags and bytes of blobs the registry holds."""
    repositories = await conn.scalar(select(func.count()).select_from(Repository))
    tags = await conn.scalar(select(func.count()).select_from(Tag))
    size = await conn.scalar(select(func.coalesce(func.sum(Blob.size), 0)))
    # PostgreSQL sums big integers as numeric.
    return int(repositories or 0), int(tags or 0), int(size or 0)


# What upstreams said of their rate limits (migration 0017)


async def save_upstreams(conn: AsyncConnection, rows: list[dict[str, object]]) -> None:
    """Upsert the rows (prefix, ratelimit_limit, ratelimit_remaining, seen_at,
    backoff_until) of upstreams whose state changed, in prefix order."""
    for row in sorted(rows, key=lambda r: str(r["prefix"])):
        stmt = dialect_insert(conn, MirrorUpstream).values(**row)
        changed = {key: getattr(stmt.excluded, key) for key in row if key != "prefix"}
        await conn.execute(
            stmt.on_conflict_do_update(index_elements=[MirrorUpstream.prefix], set_=changed)
        )


@dataclass(frozen=True, slots=True)
class UpstreamState:
    ratelimit_limit: int | None
    ratelimit_remaining: int | None
    seen_at: datetime | None
    backoff_until: datetime | None


async def upstream_states(conn: AsyncConnection) -> dict[str, UpstreamState]:
    rows = await conn.execute(
        select(
            MirrorUpstream.prefix,
            MirrorUpstream.ratelimit_limit,
            MirrorUpstream.ratelimit_remaining,
            MirrorUpstream.seen_at,
            MirrorUpstream.backoff_until,
        )
    )
    return {
        prefix: UpstreamState(
            limit, remaining, utc(seen) if seen else None, utc(until) if until else None
        )
        for prefix, limit, remaining, seen, until in rows
    }


async def listed_by_index(conn: AsyncConnection, repository: str, digest: str) -> bool:
    """Whether an index the repository holds lists this manifest (a platform of it)."""
    found = await conn.scalar(
        select(ManifestReference.manifest_id)
        .join(Manifest, Manifest.id == ManifestReference.manifest_id)
        .join(Repository, Repository.id == Manifest.repository_id)
        .where(
            Repository.name == repository,
            ManifestReference.digest == digest,
            ManifestReference.kind == "manifest",
        )
        .limit(1)
    )
    return found is not None
