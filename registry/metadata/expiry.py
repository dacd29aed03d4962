"""Queries of the mirror's cache expiry (services/expiry.py). Each takes
an open connection and the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, CompoundSelect, and_, func, select, true, union
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.gc import Candidate
from registry.metadata.models import (
    Blob,
    Manifest,
    ManifestPulls,
    ManifestReference,
    Namespace,
    Repository,
)

# When a manifest was last pulled, as far as the flushed pull counts know (services/
# pulls.py); one never pulled (fetched as an index's child and not asked for since, or
# pulled in the last seconds) counts from when it was cached.
last_pulled = func.coalesce(ManifestPulls.last_pulled_at, Manifest.created_at)


def cache_of(
    prefix: str, prefixes: Sequence[str], patterns: Sequence[str], hosted_apart: bool
) -> ColumnElement[bool]:
    """A condition on Repository rows: those in the cache of the upstream under `prefix`,
    by the mirror's routing (proxy/mirror.py): a name whose first component (its
    namespace) is an upstream's prefix is that upstream's, one whose first component
    matches a pattern of mirror.allow_hosts is that pattern's, every other name the
    prefixless upstream's. With `hosted_apart` (mirror.mirror_only off), repositories
    of namespaces that exist here are hosted, in no cache."""
    if prefix:
        found: ColumnElement[bool] = Repository.namespace == prefix
    else:
        others = [p for p in prefixes if p]
        found = and_(
            Repository.namespace.not_in(others) if others else true(),
            *(~_matching(pattern) for pattern in patterns),
        )
    if hosted_apart:
        found = and_(found, Repository.namespace.not_in(select(Namespace.name)))
    return found


def pattern_cache(pattern: str, prefixes: Sequence[str], hosted_apart: bool) -> ColumnElement[bool]:
    """The repositories of the hosts a pattern of mirror.allow_hosts lets in (not those
    an upstream is configured for)."""
    found = and_(_matching(pattern), Repository.namespace.not_in([p for p in prefixes if p]))
    if hosted_apart:
        found = and_(found, Repository.namespace.not_in(select(Namespace.name)))
    return found


def _matching(pattern: str) -> ColumnElement[bool]:
    """Repositories whose namespace matches a host pattern (`*` any run of characters;
    config.HOST_PATTERN admits no other character LIKE reads as special)."""
    return Repository.namespace.like(pattern.replace("*", "%"))


async def least_recent(
    conn: AsyncConnection,
    cache: ColumnElement[bool],
    limit: int,
    *,
    before: datetime | None = None,
    skip: Sequence[int] = (),
) -> list[Candidate]:
    """Up to `limit` of the cache's manifests, least recently pulled first; with `before`,
    only those last pulled before it. `skip`: ids already kept by this run."""
    conditions = [cache]
    if before is not None:
        conditions.append(last_pulled < before)
    if skip:
        conditions.append(Manifest.id.not_in(skip))
    rows = await conn.execute(
        select(Manifest.id, Manifest.repository_id, Manifest.digest)
        .join(Repository, Repository.id == Manifest.repository_id)
        .outerjoin(ManifestPulls, ManifestPulls.manifest_id == Manifest.id)
        .where(*conditions)
        .order_by(last_pulled, Manifest.id)
        .limit(limit)
    )
    return [Candidate(int(i), int(r), d) for i, r, d in rows]


def _digests_of(cache: ColumnElement[bool]) -> CompoundSelect[tuple[str]]:
    """Every digest the cache's manifests reference or are stored as."""
    cached = select(Manifest.id).join(Repository, Repository.id == Manifest.repository_id)
    return union(
        select(ManifestReference.digest).where(
            ManifestReference.manifest_id.in_(cached.where(cache))
        ),
        select(Manifest.digest)
        .join(Repository, Repository.id == Manifest.repository_id)
        .where(cache),
    )


async def cache_bytes(conn: AsyncConnection, cache: ColumnElement[bool]) -> int:
    """The bytes of the blobs the cache's manifests use, each counted once: what the cache
    holds once garbage collection has removed what nothing uses any more."""
    total = await conn.scalar(
        select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.digest.in_(_digests_of(cache)))
    )
    return int(total or 0)  # PostgreSQL sums big integers as numeric


async def manifest_bytes(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, int]:
    """Each manifest's size with that of the blobs it references, shared ones included:
    no less than evicting it frees."""
    if not ids:
        return {}
    sizes = {
        int(i): int(s)
        for i, s in await conn.execute(
            select(Manifest.id, Manifest.size).where(Manifest.id.in_(ids))
        )
    }
    rows = await conn.execute(
        select(ManifestReference.manifest_id, func.sum(Blob.size))
        .join(Blob, Blob.digest == ManifestReference.digest)
        .where(ManifestReference.manifest_id.in_(ids))
        .group_by(ManifestReference.manifest_id)
    )
    for ident, size in rows:
        sizes[int(ident)] = sizes.get(int(ident), 0) + int(size or 0)
    return sizes
