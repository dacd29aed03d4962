"""Blobs: their rows (size, lease, garbage collection's queue) and their links into
repositories. Why a lease keeps bytes safe from a collection racing a push is told in
services/leases.py; a namespace's quota is checked as a blob is linked (migration 0011)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata import events, repositories, uploads
from registry.metadata.database import Database
from registry.metadata.models import Blob, NamespaceBlob, Repository, RepositoryBlob, now, utc
from registry.metadata.statements import (
    Statement,
    Step,
    dialect_insert,
    rows,
    write,
    write_returning,
)
from registry.names import namespace_of

# A blob the repository may serve, with whether its lease lasts past `:fresh`: a HEAD
# renews it if not.
SIZE = Statement(
    "blob_size",
    "SELECT b.size, b.leased_until >= :fresh FROM blobs b "
    "JOIN repository_blobs l ON l.digest = b.digest "
    "JOIN repositories r ON r.id = l.repository_id "
    "WHERE r.name = :repository AND b.digest = :digest",
    point=True,
)
# A blob held here, and whether this repository links it (the mirror links blobs that
# another repository brought in once the upstream confirms this one has them).
CACHED = Statement(
    "cached_blob",
    "SELECT b.size, EXISTS (SELECT 1 FROM repository_blobs l "
    "JOIN repositories r ON r.id = l.repository_id "
    "WHERE r.name = :repository AND l.digest = b.digest) FROM blobs b WHERE b.digest = :digest",
    point=True,
)
# Before bytes are placed at a digest's path: when its row's lease ends (NULL: no row; a
# row without a lease has ended long ago), and whether garbage collection is deleting
# its bytes.
LEASE = Statement(
    "blob_lease",
    "SELECT (SELECT COALESCE(leased_until, '1970-01-01') FROM blobs WHERE digest = :digest), "
    "EXISTS (SELECT 1 FROM blob_tombstones WHERE digest = :digest)",
    point=True,
)
_NEW = (
    "INSERT INTO blobs (digest, size, created_at, leased_until, gc_after) "
    "VALUES (:digest, :size, :now, :lease_end, :lease_end)"
)
# A new blob is leased, and queued for garbage collection when its lease ends (if nothing
# references it by then); one stored again has its lease renewed.
ADD = Statement(
    "add_blob", _NEW + " ON CONFLICT (digest) DO UPDATE SET leased_until = excluded.leased_until"
)
# A manifest's own bytes: Leases.keep() left their row a whole lease, and the push's
# transaction links them, so a row there is not renewed (its lock would make pushes of
# the manifest take turns until COMMIT).
ADD_KEPT = Statement("add_manifest_blob", _NEW + " ON CONFLICT (digest) DO NOTHING")
# A lease renewed for a client that was told the repository has the blob; no row
# changed means it has not (any more).
RENEW_LINKED = Statement(
    "renew_linked",
    "UPDATE blobs SET leased_until = :lease_end WHERE digest = :digest "
    "AND EXISTS (SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id "
    "WHERE r.name = :repository AND l.digest = :digest)",
)
# In a namespace with a quota, takes its policy row (after the blob's), so that its
# uploads take turns and the quota check of LINK sees every link before it: exact.
LOCK_QUOTA = Statement(
    "lock_quota",
    "UPDATE namespace_policies SET quota_bytes = quota_bytes "
    "WHERE namespace = :namespace AND quota_bytes IS NOT NULL",
)
# A namespace's quota allows a blob of :size more, or it holds the blob already. Its
# usage is its folded total plus the deltas not folded yet (migration 0011).
_WITHIN_QUOTA = (
    "(SELECT quota_bytes FROM namespace_policies WHERE namespace = :namespace) IS NULL "
    "OR EXISTS (SELECT 1 FROM namespace_blobs WHERE namespace = :namespace "
    "AND digest = :digest) "
    "OR COALESCE((SELECT bytes FROM namespace_usage WHERE namespace = :namespace), 0) "
    "+ COALESCE((SELECT SUM(bytes) FROM usage_deltas WHERE namespace = :namespace), 0) "
    "+ :size <= (SELECT quota_bytes FROM namespace_policies WHERE namespace = :namespace)"
)
# Unless it would take the namespace past its quota (a blob it holds already costs
# nothing); no row changed: over the quota, or linked already.
LINK = Statement(
    "link_blob",
    "INSERT INTO repository_blobs (repository_id, digest, created_at) "
    "SELECT (SELECT id FROM repositories WHERE name = :repository), :digest, :now "
    f"WHERE {_WITHIN_QUOTA} ON CONFLICT DO NOTHING",
)
# A pushed blob linked on PostgreSQL: the statements of link_pushed()'s SQLite program
# in one call, which PostgreSQL commits as one statement (migration 0029).
LINK_PUSHED = Statement(
    "link_pushed_blob",
    "SELECT registry_link_blob(:namespace, :repository, :digest, :size, :now, :lease_end, "
    ":upload, :event)",
)
# A manifest's own bytes, linked by its push (services/manifests.py).
LINK_BYTES = Statement(
    "link_manifest_bytes",
    "INSERT INTO repository_blobs (repository_id, digest, created_at) "
    "VALUES (:repository_id, :digest, :now) ON CONFLICT DO NOTHING",
)


@dataclass(frozen=True, slots=True)
class Cached:
    size: int
    linked: bool  # to the repository asked about


async def size(
    db: Database, repository: str, digest: str, fresh: datetime
) -> tuple[int, bool] | None:
    """The size of a blob the repository may serve, and whether its lease lasts past
    `fresh` (one indexed lookup: blob HEAD)."""
    found = await rows(db, SIZE(repository=repository, digest=digest, fresh=fresh))
    return (int(found[0][0]), bool(found[0][1])) if found else None


async def link_pushed(
    db: Database,
    repository: str,
    digest: str,
    size: int,
    lease_end: datetime,
    upload_id: str | None,
    event: dict[str, Any],
) -> bool:
    """Link a blob whose bytes were just placed after `Leases.keep()` into the
    repository (made if need be), leased until `lease_end`, ending its upload session if
    any, and record the push's `event` row; whether the repository links it (False: the
    namespace's quota refused it, and nothing but the blob's row and lease is kept)."""
    namespace = namespace_of(repository)
    if not db.is_sqlite:
        call = LINK_PUSHED(
            namespace=namespace,
            repository=repository,
            digest=digest,
            size=size,
            lease_end=lease_end,
            upload=upload_id,
            event=events.as_json(event),
        )
        [(linked,)] = await write_returning(db, call)
        return bool(linked)
    steps: list[Step] = [
        repositories.ADD(repository=repository, namespace=namespace),
        ADD(digest=digest, size=size, lease_end=lease_end),
        LOCK_QUOTA(namespace=namespace),
    ]
    if upload_id is not None:
        steps.append(uploads.DELETE(id=upload_id))
    steps.append(LINK(repository=repository, namespace=namespace, digest=digest, size=size))
    steps.append(events.RECORD_IF_LINKED(**event, digest=digest))
    return bool(await write(db, *steps))


async def lease(db: Database, digest: str) -> tuple[datetime | None, bool]:
    """When the blob's lease ends (None: no such blob), and whether it has a tombstone."""
    [(leased_until, tombstoned)] = await rows(db, LEASE(digest=digest))
    if isinstance(leased_until, str):  # SQLite's text, in UTC
        leased_until = datetime.fromisoformat(leased_until)
    return (None if leased_until is None else utc(leased_until)), bool(tombstoned)


async def cached(db: Database, repository: str, digest: str) -> Cached | None:
    found = await rows(db, CACHED(repository=repository, digest=digest))
    return Cached(int(found[0][0]), bool(found[0][1])) if found else None


# The same lookup as SIZE, through SQLAlchemy inside a caller's transaction; built once:
# a statement made per request costs more Python time than SQLite takes to answer it.
_SIZE = (
    select(Blob.size)
    .join(RepositoryBlob, RepositoryBlob.digest == Blob.digest)
    .join(Repository, Repository.id == RepositoryBlob.repository_id)
    .where(Repository.name == bindparam("repository"), Blob.digest == bindparam("digest"))
)


async def size_in(conn: AsyncConnection, repository: str, digest: str) -> int | None:
    """The size of a blob the repository may serve, or None."""
    return await conn.scalar(_SIZE, {"repository": repository, "digest": digest})


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
    found = (await conn.execute(query.values(leased_until=lease_end).returning(Blob.size))).scalar()
    return None if found is None else int(found)


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
    repo = await repositories.repository_id(conn, repository)
    if repo is None:
        return False
    result = await conn.execute(
        delete(RepositoryBlob).where(
            RepositoryBlob.repository_id == repo, RepositoryBlob.digest == digest
        )
    )
    return result.rowcount > 0
