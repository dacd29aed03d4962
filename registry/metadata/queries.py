"""Queries of the metadata index. Each takes an open connection; the caller (a service)
owns the transaction. Lookups on the hot paths are one indexed round trip."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from registry.metadata.models import (
    Blob,
    Manifest,
    ManifestReference,
    NamespaceBlob,
    Repository,
    RepositoryBlob,
    Tag,
    Upload,
    now,
)
from registry.names import namespace_of


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    media_type: str
    content: bytes
    # Where it is stored (0: not stored here, as a mirror's answer straight from upstream).
    repository_id: int = 0
    manifest_id: int = 0


@dataclass(frozen=True, slots=True)
class Referrer:
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    annotations: str | None


def dialect_insert(conn: AsyncConnection, model: Any) -> Any:
    table: Table = model.__table__
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def lexical(conn: AsyncConnection, column: Any) -> ColumnElement[Any]:
    # The spec orders tags and names lexically (byte order); PostgreSQL's default
    # collation would order by locale rules instead.
    return column.collate("C") if conn.dialect.name == "postgresql" else column


# Repositories


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


# Blobs


# The hot-path lookups are built once: a statement made per request costs more Python
# time than SQLite takes to answer it.
_BLOB_SIZE = (
    select(Blob.size)
    .join(RepositoryBlob, RepositoryBlob.digest == Blob.digest)
    .join(Repository, Repository.id == RepositoryBlob.repository_id)
    .where(Repository.name == bindparam("repository"), Blob.digest == bindparam("digest"))
)


async def blob_size(conn: AsyncConnection, repository: str, digest: str) -> int | None:
    """The size of a blob the repository may serve, or None."""
    return await conn.scalar(_BLOB_SIZE, {"repository": repository, "digest": digest})


async def renew_lease(
    conn: AsyncConnection, digest: str, lease_end: datetime, repository: str | None = None
) -> int | None:
    """Renew the lease of a stored blob (one `repository` links, if given), taking its
    row; its size, or None if there is no such blob (or a collection just removed it)."""
    query = update(Blob).where(Blob.digest == digest)
    if repository is not None:
        linked = (
            select(RepositoryBlob.digest)
            .join(Repository, Repository.id == RepositoryBlob.repository_id)
            .where(Repository.name == repository, RepositoryBlob.digest == digest)
        )
        query = query.where(linked.exists())
    size = (await conn.execute(query.values(leased_until=lease_end).returning(Blob.size))).scalar()
    return None if size is None else int(size)


async def link_blob(
    conn: AsyncConnection, repository_id: int, digest: str, size: int, lease_end: datetime
) -> None:
    """Link a blob into a repository, storing its row if it is new (queued for garbage
    collection when the lease ends) and renewing its lease if not. Only for bytes the
    caller has just placed after `Leases.keep()`, or a row whose lease it renewed: a row
    inserted for bytes a collection deleted would be a blob without bytes."""
    await add_blob(conn, digest, size, lease_end)
    await conn.execute(
        dialect_insert(conn, RepositoryBlob)
        .values(repository_id=repository_id, digest=digest, created_at=now())
        .on_conflict_do_nothing()
    )


async def add_blob(conn: AsyncConnection, digest: str, size: int, lease_end: datetime) -> None:
    """Store a blob's row, queued for garbage collection when its lease ends, or renew the
    lease of the row there is (the same caveat as link_blob)."""
    insert = dialect_insert(conn, Blob).values(
        digest=digest, size=size, created_at=now(), leased_until=lease_end, gc_after=lease_end
    )
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[Blob.digest], set_={"leased_until": insert.excluded.leased_until}
        )
    )


async def lock_namespace_counts(conn: AsyncConnection, digests: Any) -> None:
    """Take the (namespace, blob) counts of these blobs (a list, or a subquery of
    digests), in order, before unlinking them: the links' triggers write those rows
    (migration 0011), and two transactions unlinking must not deadlock on them."""
    await conn.execute(
        select(NamespaceBlob.links)
        .where(NamespaceBlob.digest.in_(digests))
        .order_by(NamespaceBlob.namespace, NamespaceBlob.digest)
        .with_for_update()
    )


async def unlink_blob(conn: AsyncConnection, repository: str, digest: str) -> bool:
    repo = await repository_id(conn, repository)
    if repo is None:
        return False
    result = await conn.execute(
        delete(RepositoryBlob).where(
            RepositoryBlob.repository_id == repo, RepositoryBlob.digest == digest
        )
    )
    return result.rowcount > 0


# Manifests and tags

MANIFEST_COLUMNS = (Manifest.digest, Manifest.media_type, Manifest.content)


async def lock_tag_targets(
    conn: AsyncConnection, repository_id: int, tags: Sequence[str], manifest_id: int
) -> dict[str, str]:
    """Lock the manifests these tags point at now (other than `manifest_id`), in id order:
    moving a tag writes its old manifest (the untagged trigger), and a delete of that
    manifest locks it before its blobs, as a push must too. Returns tag -> the digest
    it points at now, for those that point elsewhere."""
    if not tags:
        return {}
    rows = await conn.execute(
        select(Tag.name, Manifest.digest)
        .join(Manifest, Manifest.id == Tag.manifest_id)
        .where(
            Tag.repository_id == repository_id,
            Tag.name.in_(tags),
            Tag.manifest_id != manifest_id,
        )
        .order_by(Manifest.id)
        .with_for_update(key_share=True, of=Manifest)
    )
    return {name: digest for name, digest in rows}


@dataclass(frozen=True, slots=True)
class Deleted:
    tags: int
    manifests: int


async def tags_of(conn: AsyncConnection, which: ColumnElement[bool]) -> list[str]:
    """The tags of the manifests `which` selects (it may name Manifest and Repository)."""
    rows = await conn.scalars(
        select(Tag.name)
        .join(Manifest, Manifest.id == Tag.manifest_id)
        .join(Repository, Repository.id == Manifest.repository_id)
        .where(which)
    )
    return list(rows)


async def tag_exists(conn: AsyncConnection, repository: str, tag: str) -> bool:
    found = await conn.scalar(
        select(Tag.name)
        .join(Repository, Repository.id == Tag.repository_id)
        .where(Repository.name == repository, Tag.name == tag)
    )
    return found is not None


async def lock_manifests(conn: AsyncConnection, which: ColumnElement[bool]) -> None:
    """Hold the rows of the manifests `which` selects (it may name Manifest only), in id
    order: a tag set on one waits (its trigger writes the row) until the caller commits."""
    await conn.execute(select(Manifest.id).where(which).order_by(Manifest.id).with_for_update())


async def delete_manifests(conn: AsyncConnection, which: ColumnElement[bool]) -> Deleted:
    """Delete the manifests `which` selects, with their tags and references (their
    blobs are queued for garbage collection by the triggers)."""
    ids = select(Manifest.id).where(which)
    referenced = select(ManifestReference.digest).where(ManifestReference.manifest_id.in_(ids))
    # Locks in the order of a manifest push, so that the two cannot deadlock on
    # PostgreSQL: the manifests' rows, then the blob rows the triggers of the deletes
    # below write (what they reference, and their own) in digest order, the tags last.
    # Explicit deletes rather than ON DELETE CASCADE, which SQLite only honours with its
    # foreign_keys pragma on.
    await lock_manifests(conn, which)
    await conn.execute(
        select(Blob.digest)
        .where(
            or_(Blob.digest.in_(referenced), Blob.digest.in_(select(Manifest.digest).where(which)))
        )
        .order_by(Blob.digest)
        .with_for_update(key_share=True)
    )
    await conn.execute(delete(ManifestReference).where(ManifestReference.manifest_id.in_(ids)))
    tags = await conn.execute(delete(Tag).where(Tag.manifest_id.in_(ids)))
    manifests = await conn.execute(delete(Manifest).where(which))
    return Deleted(tags.rowcount, manifests.rowcount)


async def delete_manifest(conn: AsyncConnection, repository: str, digest: str) -> bool:
    """Delete a manifest with its tags and references."""
    repo = await repository_id(conn, repository)
    if repo is None:
        return False
    which = and_(Manifest.repository_id == repo, Manifest.digest == digest)
    return (await delete_manifests(conn, which)).manifests > 0


async def delete_repository(conn: AsyncConnection, repository: str) -> Deleted | None:
    """Delete a repository: its tags, manifests and links (what nothing else references
    is garbage collection's). None if there is no such repository."""
    repo = await repository_id(conn, repository)
    if repo is None:
        return None
    deleted = await delete_manifests(conn, Manifest.repository_id == repo)
    linked = select(RepositoryBlob.digest).where(RepositoryBlob.repository_id == repo)
    await lock_namespace_counts(conn, linked)
    await conn.execute(delete(RepositoryBlob).where(RepositoryBlob.repository_id == repo))
    await conn.execute(delete(Repository).where(Repository.id == repo))
    return deleted


async def delete_tag(conn: AsyncConnection, repository: str, tag: str) -> bool:
    repo = await repository_id(conn, repository)
    if repo is None:
        return False
    # Its manifest's row before the tag, as a push moving the tag takes them.
    await lock_tag_targets(conn, repo, [tag], manifest_id=0)
    result = await conn.execute(delete(Tag).where(Tag.repository_id == repo, Tag.name == tag))
    return result.rowcount > 0


async def referrers(
    conn: AsyncConnection, repository: str, subject: str, artifact_type: str | None
) -> list[Referrer]:
    query = (
        select(
            Manifest.digest,
            Manifest.media_type,
            Manifest.artifact_type,
            Manifest.size,
            Manifest.annotations,
        )
        .join(Repository, Repository.id == Manifest.repository_id)
        .where(Repository.name == repository, Manifest.subject == subject)
        .order_by(Manifest.digest)
    )
    if artifact_type is not None:
        query = query.where(Manifest.artifact_type == artifact_type)
    return [Referrer(*row) for row in (await conn.execute(query)).all()]


# Upload sessions


async def uploads_idle_since(conn: AsyncConnection, cutoff: datetime) -> list[str]:
    """Sessions that have not moved since `cutoff`."""
    return list((await conn.scalars(select(Upload.id).where(Upload.updated_at < cutoff))).all())


async def upload_count(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).select_from(Upload)) or 0)


async def renew_upload_claims(
    conn: AsyncConnection, writers: Sequence[str], moment: datetime
) -> set[str]:
    """Renew the claims of these writers; those still theirs."""
    renewed = await conn.scalars(
        update(Upload)
        .where(Upload.writer.in_(writers))
        .values(writing_since=moment)
        .returning(Upload.writer)
    )
    return {str(w) for w in renewed}


async def upload_ids(conn: AsyncConnection) -> set[str]:
    return set((await conn.scalars(select(Upload.id))).all())
