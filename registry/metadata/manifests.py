"""Manifests: their rows (content, media type, subject), what they reference, and their
deletion with their tags; the statements of a manifest push, which services/manifests.py
runs as one program in the order of its row locks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from registry.mediatypes import ParsedManifest
from registry.metadata import blobs, repositories
from registry.metadata.database import Database
from registry.metadata.models import (
    Blob,
    Manifest,
    ManifestReference,
    Repository,
    RepositoryBlob,
    Tag,
)
from registry.metadata.statements import Row, Statement, Step, rows
from registry.metadata.trust import children_of, refresh_signed


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    media_type: str
    content: bytes
    # Where it is stored (0: not stored here, as a mirror's answer straight from upstream).
    repository_id: int = 0
    manifest_id: int = 0
    # Its namespace's signature policy, when no trusted key signed it and it is not
    # itself a signature or other referrer (audit or enforce); None otherwise.
    unsigned: str | None = None


@dataclass(frozen=True, slots=True)
class Referrer:
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    annotations: str | None


def _select(exempt: str) -> str:
    """The columns of a manifest GET, with what its namespace's signature policy says
    of it, from the rows it reads anyway (the repository's copy of the policy, the
    manifest's `signed`): nothing to say (no policy, signed, a referrer or `exempt`) or
    the policy (audit or enforce)."""
    return (
        "SELECT m.digest, m.media_type, m.content, m.repository_id, m.id, "
        "CASE WHEN r.signature_policy = 'off' OR m.signed "
        f"OR m.subject IS NOT NULL{exempt} THEN NULL ELSE r.signature_policy END "
        "FROM manifests m "
    )


BY_TAG = Statement(
    "manifest_by_tag",
    # cosign's signatures, attestations and SBOMs, and the referrers tag schema's index,
    # are tagged sha256-<hex>...: clients fetch them to verify, whatever the policy.
    _select(" OR t.name LIKE 'sha256-%'") + "JOIN tags t ON t.manifest_id = m.id "
    "JOIN repositories r ON r.id = t.repository_id WHERE r.name = :repository "
    "AND t.name = :tag",
    point=True,
)
BY_DIGEST = Statement(
    "manifest_by_digest",
    _select("") + "JOIN repositories r ON r.id = m.repository_id WHERE "
    "r.name = :repository AND m.digest = :digest",
    point=True,
)
# A manifest's row: its columns, their values, and what a second push of it changes.
_COLUMNS = (
    "(repository_id, digest, media_type, artifact_type, size, subject, config_digest, "
    "annotations, content, created_at, untagged_at)"
)
_VALUES = (
    ":repository_id, :digest, :media_type, :artifact_type, :size, :subject, :config_digest, "
    ":annotations, :content, :now, :untagged_at"
)
_AGAIN = (
    "ON CONFLICT (repository_id, digest) DO UPDATE SET untagged_at = CASE "
    "WHEN manifests.untagged_at IS NULL THEN NULL ELSE excluded.untagged_at END "
    "RETURNING id, created_at = :now"
)
# The statements of a push, the program services/manifests.py runs on SQLite (a list
# parameter is JSON text for json_each); on PostgreSQL the function migration 0028
# installs runs their like, with the row locks SQLite's one writer makes moot.
#
# Its id, and whether this statement inserted it (created_at is set only then).
PUT = Statement("put_manifest", f"INSERT INTO manifests {_COLUMNS} VALUES ({_VALUES}) {_AGAIN}")
# Which of a manifest's blobs the repository links, and which of an index's manifests
# it holds.
LINKED_BLOBS = Statement(
    "linked_blobs",
    "SELECT b.digest FROM blobs b JOIN repository_blobs l ON l.digest = b.digest "
    "WHERE l.repository_id = :repository_id AND b.digest IN (SELECT value FROM "
    "json_each(:digests)) ORDER BY b.digest",
)
HELD = Statement(
    "held_manifests",
    "SELECT digest FROM manifests WHERE repository_id = :repository_id "
    "AND digest IN (SELECT value FROM json_each(:digests)) ORDER BY digest",
)
ADD_REFERENCES = Statement(
    "add_references",
    "INSERT INTO manifest_references (manifest_id, digest, kind) SELECT :manifest_id, "
    "d.value, k.value FROM json_each(:digests) d JOIN json_each(:kinds) k ON k.key = d.key "
    "WHERE true ON CONFLICT DO NOTHING",
)


def put(
    repository_id: int,
    digest: str,
    body: bytes,
    parsed: ParsedManifest,
    untagged_at: datetime | None,
) -> Step:
    """PUT for a manifest's row."""
    return PUT(
        repository_id=repository_id,
        digest=digest,
        media_type=parsed.media_type,
        artifact_type=parsed.artifact_type,
        size=len(body),
        subject=parsed.subject,
        config_digest=parsed.config,
        annotations=json.dumps(parsed.annotations) if parsed.annotations else None,
        content=body,
        untagged_at=untagged_at,
    )


def _stored(found: list[Row]) -> StoredManifest | None:
    if not found:
        return None
    digest, media_type, content, repository_id, manifest_id, unsigned = found[0]
    return StoredManifest(
        digest, media_type, bytes(content), int(repository_id), int(manifest_id), unsigned
    )


async def by_tag(db: Database, repository: str, tag: str) -> StoredManifest | None:
    """The manifest a tag points at (one indexed lookup: manifest GET and HEAD)."""
    return _stored(await rows(db, BY_TAG(repository=repository, tag=tag)))


async def by_digest(db: Database, repository: str, digest: str) -> StoredManifest | None:
    return _stored(await rows(db, BY_DIGEST(repository=repository, digest=digest)))


# SQLAlchemy's, for the mirror's lookups that join more.
COLUMNS = (Manifest.digest, Manifest.media_type, Manifest.content)


@dataclass(frozen=True, slots=True)
class Deleted:
    tags: int
    manifests: int


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
    # What a signed index listed may be signed through it alone: decided again below.
    listed = list(await conn.scalars(children_of(ids.where(Manifest.signed))))
    await conn.execute(delete(ManifestReference).where(ManifestReference.manifest_id.in_(ids)))
    tags = await conn.execute(delete(Tag).where(Tag.manifest_id.in_(ids)))
    manifests = await conn.execute(delete(Manifest).where(which))
    await refresh_signed(conn, listed)
    return Deleted(tags.rowcount, manifests.rowcount)


async def delete_manifest(conn: AsyncConnection, repository: str, digest: str) -> bool:
    """Delete a manifest with its tags and references."""
    repo = await repositories.repository_id(conn, repository)
    if repo is None:
        return False
    which = and_(Manifest.repository_id == repo, Manifest.digest == digest)
    return (await delete_manifests(conn, which)).manifests > 0


async def delete_repository(conn: AsyncConnection, repository: str) -> Deleted | None:
    """Delete a repository: its tags, manifests and links (what nothing else references
    is garbage collection's). None if there is no such repository."""
    repo = await repositories.repository_id(conn, repository)
    if repo is None:
        return None
    deleted = await delete_manifests(conn, Manifest.repository_id == repo)
    linked = select(RepositoryBlob.digest).where(RepositoryBlob.repository_id == repo)
    await blobs.lock_namespace_counts(conn, linked)
    await conn.execute(delete(RepositoryBlob).where(RepositoryBlob.repository_id == repo))
    await conn.execute(delete(Repository).where(Repository.id == repo))
    return deleted


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
