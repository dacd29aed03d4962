"""Queries of retention. Each takes an open connection and the caller
owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import Blob, Manifest, ManifestReference, Repository, Tag, utc


@dataclass(frozen=True, slots=True)
class TagRow:
    name: str
    manifest_id: int
    digest: str
    pushed_at: datetime


async def repositories_in(conn: AsyncConnection, namespace: str) -> list[tuple[int, str]]:
    rows = await conn.execute(
        select(Repository.id, Repository.name)
        .where(Repository.namespace == namespace)
        .order_by(Repository.name)
    )
    return [(int(i), n) for i, n in rows]


async def tags_by_push(conn: AsyncConnection, repository_id: int) -> list[TagRow]:
    """The repository's tags, the most recently pushed first."""
    rows = await conn.execute(
        select(Tag.name, Tag.manifest_id, Manifest.digest, Tag.updated_at)
        .join(Manifest, Manifest.id == Tag.manifest_id)
        .where(Tag.repository_id == repository_id)
        .order_by(Tag.updated_at.desc(), Tag.name)
    )
    return [TagRow(name, int(mid), digest, utc(at)) for name, mid, digest, at in rows]


async def delete_tags(conn: AsyncConnection, repository_id: int, names: Sequence[str]) -> None:
    if names:
        await conn.execute(
            delete(Tag).where(Tag.repository_id == repository_id, Tag.name.in_(names))
        )


async def followers(
    conn: AsyncConnection, repository_id: int, digests: Sequence[str]
) -> list[tuple[int, str]]:
    """(id, digest) of the repository's manifests that follow these: their referrers
    (subject among them) and the platform manifests their indexes list."""
    listing = select(Manifest.id).where(
        Manifest.digest.in_(digests), Manifest.repository_id == repository_id
    )
    listed = select(ManifestReference.digest).where(
        ManifestReference.manifest_id.in_(listing), ManifestReference.kind == "manifest"
    )
    rows = await conn.execute(
        select(Manifest.id, Manifest.digest).where(
            Manifest.repository_id == repository_id,
            or_(Manifest.subject.in_(digests), Manifest.digest.in_(listed)),
        )
    )
    return [(int(i), d) for i, d in rows]


async def freed_bytes(conn: AsyncConnection, digests: Sequence[str]) -> int:
    """Bytes of these blobs that nothing references any more, nor is stored as: what a
    collection frees once their leases end (read after the deletes, in their
    transaction)."""
    if not digests:
        return 0
    referenced = select(ManifestReference.digest).where(ManifestReference.digest == Blob.digest)
    stored = select(Manifest.id).where(Manifest.digest == Blob.digest)
    total = await conn.scalar(
        select(func.coalesce(func.sum(Blob.size), 0)).where(
            Blob.digest.in_(digests), ~referenced.exists(), ~stored.exists()
        )
    )
    return int(total or 0)


async def blobs_of(conn: AsyncConnection, ids: Sequence[int]) -> list[str]:
    """The digests these manifests reference, and their own."""
    refs = await conn.scalars(
        select(ManifestReference.digest).where(ManifestReference.manifest_id.in_(ids))
    )
    own = await conn.scalars(select(Manifest.digest).where(Manifest.id.in_(ids)))
    return sorted(set(refs) | set(own))


async def lock_manifests(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Lock these manifests' rows, in id order, before their blobs and tags: the order a
    push takes them in."""
    if ids:
        await conn.execute(
            select(Manifest.id).where(Manifest.id.in_(ids)).order_by(Manifest.id).with_for_update()
        )
