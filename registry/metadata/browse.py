"""Queries of the browse API (/api/v1/repositories...): a page of repositories or tags
with what a console shows of each, in one statement per page. Each
takes an open connection and the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from registry.metadata.models import (
    Blob,
    Manifest,
    ManifestPulls,
    ManifestReference,
    Repository,
    RepositoryPulls,
    Tag,
    utc,
)
from registry.metadata.statements import lexical


def aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    name: str
    namespace: str
    tags: int
    bytes: int
    pushed_at: datetime | None
    pulls: int
    pulled_at: datetime | None


@dataclass(frozen=True, slots=True)
class TagRow:
    name: str
    pushed_at: datetime
    digest: str
    media_type: str
    artifact_type: str | None
    content: bytes
    pulled_at: datetime | None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def repositories(
    conn: AsyncConnection,
    namespaces: Collection[str] | None,
    containing: str | None,
    last: str | None,
    limit: int,
    order: str = "name",
) -> list[RepositoryRow]:
    """Repositories of `namespaces` (None: all) whose name contains `containing`, after
    the repository `last`, each with its tag count, bytes linked, last push and pulls; in
    name order, or newest push first (`order` "pushed"), or most pulled first ("pulls"),
    ties in name order."""
    tags = select(func.count()).where(Tag.repository_id == Repository.id).scalar_subquery()
    size = referenced_bytes(Repository.id)
    pushed = func.coalesce(
        select(func.max(Tag.updated_at))
        .where(Tag.repository_id == Repository.id)
        .scalar_subquery(),
        select(func.max(Manifest.created_at))
        .where(Manifest.repository_id == Repository.id)
        .scalar_subquery(),
    )
    pulls = func.coalesce(RepositoryPulls.pulls, 0)
    query = (
        select(
            Repository.name,
            Repository.namespace,
            tags,
            size,
            pushed,
            pulls,
            RepositoryPulls.last_pulled_at,
        )
        .outerjoin(RepositoryPulls, RepositoryPulls.repository_id == Repository.id)
        .limit(limit)
    )
    # A repository is listed while it holds a manifest: one whose last manifest was
    # deleted (or whose push has sent blobs only, so far) is not.
    query = query.where(select(Manifest.id).where(Manifest.repository_id == Repository.id).exists())
    if namespaces is not None:
        query = query.where(Repository.namespace.in_(namespaces))
    if containing:
        query = query.where(Repository.name.like(_like(containing), escape="\\"))
    name = lexical(conn, Repository.name)
    if order == "name":
        query = query.order_by(name)
        if last:
            query = query.where(name > last)
    else:
        # The key of `last` is read first, then the page is what comes after it, as
        # for tags by push time.
        key = pulls if order == "pulls" else pushed
        query = query.order_by(key.desc(), name)
        if last:
            after = await conn.scalar(
                select(key)
                .select_from(Repository)
                .outerjoin(RepositoryPulls, RepositoryPulls.repository_id == Repository.id)
                .where(Repository.name == last)
            )
            if after is None:
                return []  # that repository is gone: start again from the top
            query = query.where(or_(key < after, and_(key == after, name > last)))
    return [
        RepositoryRow(n, ns, int(t), int(b), aware(p), int(c), aware(at))
        for n, ns, t, b, p, c, at in await conn.execute(query)
    ]


def referenced_bytes(repository_id: Any) -> Any:
    """The size of what a repository's manifests reference, and of the manifests
    themselves, each blob once: what deleting the repository could free, and what it
    holds whatever garbage collection has not removed yet (blobs it still links)."""
    # Correlated to the repository by hand: SQLAlchemy does not see through the union.
    mine = select(Manifest.id).where(Manifest.repository_id == repository_id)
    used = (
        select(ManifestReference.digest)
        .where(ManifestReference.manifest_id.in_(mine.correlate(Repository)))
        .correlate(Repository)
        .union(
            select(Manifest.digest)
            .where(Manifest.repository_id == repository_id)
            .correlate(Repository)
        )
    )
    return (
        select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.digest.in_(used)).scalar_subquery()
    )


async def repository_id(conn: AsyncConnection, name: str) -> int | None:
    return await conn.scalar(select(Repository.id).where(Repository.name == name))


async def tag_sharing(
    conn: AsyncConnection, repository_id: int, tag: str
) -> tuple[str, list[str]] | None:
    """The digest `tag` points at and the repository's other tags that point there;
    None if there is no such tag."""
    target = (
        select(Tag.manifest_id)
        .where(Tag.repository_id == repository_id, Tag.name == tag)
        .scalar_subquery()
    )
    rows = (
        await conn.execute(
            select(Manifest.digest, Tag.name)
            .join(Tag, Tag.manifest_id == Manifest.id)
            .where(Manifest.id == target)
        )
    ).all()
    if not rows:
        return None
    return rows[0][0], sorted(name for _, name in rows if name != tag)


_TAG_COLUMNS = (
    Tag.name,
    Tag.updated_at,
    Manifest.digest,
    Manifest.media_type,
    Manifest.artifact_type,
    Manifest.content,
    ManifestPulls.last_pulled_at,
)


def _tag_rows(rows: Any) -> list[TagRow]:
    return [TagRow(n, utc(p), d, m, a, bytes(c), aware(at)) for n, p, d, m, a, c, at in rows]


async def tags(
    conn: AsyncConnection, repository_id: int, by_push: bool, last: str | None, limit: int
) -> list[TagRow]:
    """A page of a repository's tags with their manifests: in name order, or newest push
    first (`by_push`, ties by name), after the tag `last`. One range of an index either
    way, however many tags the repository has."""
    query = (
        select(*_TAG_COLUMNS)
        .join(Manifest, Manifest.id == Tag.manifest_id)
        .outerjoin(ManifestPulls, ManifestPulls.manifest_id == Manifest.id)
        .where(Tag.repository_id == repository_id)
        .limit(limit)
    )
    name = lexical(conn, Tag.name)
    if not by_push:
        query = query.order_by(name)
        if last:
            query = query.where(name > last)
        return _tag_rows(await conn.execute(query))
    query = query.order_by(Tag.updated_at.desc(), name.desc())
    if last:
        after = await conn.scalar(
            select(Tag.updated_at).where(Tag.repository_id == repository_id, Tag.name == last)
        )
        if after is None:
            return []  # that tag is gone: start again from the top
        query = query.where(
            or_(
                Tag.updated_at < after,
                and_(Tag.updated_at == after, name < last),
            )
        )
    return _tag_rows(await conn.execute(query))


async def manifests(
    conn: AsyncConnection, repository_id: int, digests: Collection[str]
) -> dict[str, tuple[str, bytes]]:
    """digest -> (media type, content) of those of `digests` the repository stores."""
    if not digests:
        return {}
    rows = await conn.execute(
        select(Manifest.digest, Manifest.media_type, Manifest.content).where(
            Manifest.repository_id == repository_id, Manifest.digest.in_(digests)
        )
    )
    return {d: (m, bytes(c)) for d, m, c in rows}


async def manifest_facts(
    conn: AsyncConnection, manifest_id: int
) -> tuple[str | None, datetime | None, datetime | None]:
    """(artifact type, pushed, last pulled) of one manifest."""
    row = (
        await conn.execute(
            select(Manifest.artifact_type, Manifest.created_at, ManifestPulls.last_pulled_at)
            .outerjoin(ManifestPulls, ManifestPulls.manifest_id == Manifest.id)
            .where(Manifest.id == manifest_id)
        )
    ).first()
    return (row[0], aware(row[1]), aware(row[2])) if row else (None, None, None)


@dataclass(frozen=True, slots=True)
class UntaggedRow:
    digest: str
    media_type: str
    artifact_type: str | None
    content: bytes
    pushed_at: datetime
    pulled_at: datetime | None
    untagged_at: datetime
    referrers: int


def _listed_here() -> Any:
    """Whether a manifest of the same repository lists this one (an index its platform
    image): it goes with that manifest, and shows under it."""
    parent = aliased(Manifest)
    return (
        select(ManifestReference.manifest_id)
        .join(parent, parent.id == ManifestReference.manifest_id)
        .where(
            ManifestReference.digest == Manifest.digest,
            ManifestReference.kind == "manifest",
            parent.repository_id == Manifest.repository_id,
        )
        .exists()
    )


def _subject_here() -> Any:
    """Whether this manifest refers to one the repository holds (a signature or SBOM of
    an image): it stays with that image, and shows among its referrers."""
    subject = aliased(Manifest)
    return (
        select(subject.id)
        .where(subject.repository_id == Manifest.repository_id, subject.digest == Manifest.subject)
        .exists()
    )


async def untagged(
    conn: AsyncConnection, repository_id: int, last: str | None, limit: int
) -> list[UntaggedRow]:
    """A page of the repository's untagged manifests, newest push first (after the one
    whose digest is `last`): those no tag points at, that no manifest of the repository
    lists, and that refer to no manifest it holds; with how many referrers each has.
    What deleting a tag leaves behind, and what gc.untagged_hours deletes."""
    referrer = aliased(Manifest)
    referrers = (
        select(func.count())
        .where(
            referrer.repository_id == Manifest.repository_id, referrer.subject == Manifest.digest
        )
        .scalar_subquery()
    )
    query = (
        select(
            Manifest.digest,
            Manifest.media_type,
            Manifest.artifact_type,
            Manifest.content,
            Manifest.created_at,
            ManifestPulls.last_pulled_at,
            Manifest.untagged_at,
            referrers,
        )
        .outerjoin(ManifestPulls, ManifestPulls.manifest_id == Manifest.id)
        .where(
            Manifest.repository_id == repository_id,
            Manifest.untagged_at.is_not(None),
            ~_listed_here(),
            ~and_(Manifest.subject.is_not(None), _subject_here()),
        )
        .order_by(Manifest.created_at.desc(), Manifest.digest)
        .limit(limit)
    )
    if last:
        after = await conn.scalar(
            select(Manifest.created_at).where(
                Manifest.repository_id == repository_id, Manifest.digest == last
            )
        )
        if after is None:
            return []  # that manifest is gone: start again from the top
        query = query.where(
            or_(
                Manifest.created_at < after,
                and_(Manifest.created_at == after, Manifest.digest > last),
            )
        )
    return [
        UntaggedRow(d, m, a, bytes(c), utc(p), aware(at), utc(u), int(r))
        for d, m, a, c, p, at, u, r in await conn.execute(query)
    ]
