"""Tags: where each points, the version of a repository's tag list (the tag cache's key,
kept by a trigger), pages of them in byte order, and the statements of a push that set
or move them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from registry.metadata import repositories
from registry.metadata.database import Database
from registry.metadata.models import Manifest, Repository, Tag
from registry.metadata.statements import Statement, rows

VERSION = Statement(
    "tags_version", "SELECT id, tags_version FROM repositories WHERE name = :repository", point=True
)
# Tags in byte order, as the spec asks (PostgreSQL's default collation would not).
# Compared in the order it sorts by: in the database's collation, a page after `last`
# could skip or repeat tags (and no byte-order index would serve it, migration 0019).
_AFTER = (
    "SELECT name FROM tags WHERE repository_id = :repository_id "
    "AND name {collate} > :last ORDER BY name {collate} LIMIT :limit"
)
AFTER = Statement("tags_after", _AFTER.format(collate=""), _AFTER.format(collate='COLLATE "C"'))
# Where a tag points, if elsewhere: one tag a statement, by both columns of its key
# (migration 0028's function asks so too, since a plan PostgreSQL keeps for
# `name = ANY(array)` may scan every tag of the repository: it did, 1.1 ms at 5,700
# tags, once the statistics were stale).
MOVES = Statement(
    "tag_moves",
    "SELECT m.digest FROM tags t JOIN manifests m ON m.id = t.manifest_id "
    "WHERE t.repository_id = :repository_id AND t.name = :tag AND t.manifest_id != :manifest_id",
)
SET = Statement(
    "set_tag",
    "INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES "
    "(:repository_id, :tag, :manifest_id, :now) ON CONFLICT (repository_id, name) "
    "DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at",
)
# An immutable tag is set only if it points nowhere yet; then where it points.
ADD = Statement(
    "add_tag",
    "INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES "
    "(:repository_id, :tag, :manifest_id, :now) ON CONFLICT DO NOTHING",
)
TARGET = Statement(
    "tag_target",
    "SELECT manifest_id FROM tags WHERE repository_id = :repository_id AND name = :tag",
)


async def version(db: Database, repository: str) -> tuple[int, int] | None:
    """The repository's id and the version of its tag list."""
    found = await rows(db, VERSION(repository=repository))
    return (int(found[0][0]), int(found[0][1])) if found else None


async def after(db: Database, repository_id: int, last: str | None, limit: int) -> list[str]:
    found = await rows(db, AFTER(repository_id=repository_id, last=last or "", limit=limit))
    return [row[0] for row in found]


async def lock_tag_targets(
    conn: AsyncConnection, repository_id: int, tags: Sequence[str], manifest_id: int
) -> dict[str, str]:
    """Lock the manifests these tags point at now (other than `manifest_id`), in id order:
    moving a tag writes its old manifest (the untagged trigger), and a delete of that
    manifest locks it before its blobs, as a push must too. Returns tag -> the digest
    it points at now, for those that point elsewhere."""
    if not tags:
        return {}
    found = await conn.execute(
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
    return {name: digest for name, digest in found}


async def tags_of(conn: AsyncConnection, which: ColumnElement[bool]) -> list[str]:
    """The tags of the manifests `which` selects (it may name Manifest and Repository)."""
    found = await conn.scalars(
        select(Tag.name)
        .join(Manifest, Manifest.id == Tag.manifest_id)
        .join(Repository, Repository.id == Manifest.repository_id)
        .where(which)
    )
    return list(found)


async def tag_exists(conn: AsyncConnection, repository: str, tag: str) -> bool:
    found = await conn.scalar(
        select(Tag.name)
        .join(Repository, Repository.id == Tag.repository_id)
        .where(Repository.name == repository, Tag.name == tag)
    )
    return found is not None


async def delete_tag(conn: AsyncConnection, repository: str, tag: str) -> bool:
    repo = await repositories.repository_id(conn, repository)
    if repo is None:
        return False
    # Its manifest's row before the tag, as a push moving the tag takes them.
    await lock_tag_targets(conn, repo, [tag], manifest_id=0)
    result = await conn.execute(delete(Tag).where(Tag.repository_id == repo, Tag.name == tag))
    return result.rowcount > 0
