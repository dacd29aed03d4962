"""The lookups on the hot path (manifest GET/HEAD, blob HEAD, tag lists), sent through the
driver's own connection: one call into aiosqlite or asyncpg each. Measured under load,
SQLAlchemy's per-statement work (greenlet switches, result processing, a second thread hop
to fetch) cost more than SQLite took to answer. Everything else uses queries.py; both read
the same tables, and tests run both on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from registry.metadata.database import Database
from registry.metadata.queries import StoredManifest

_MANIFEST = "SELECT m.digest, m.media_type, m.content FROM manifests m "
_SQL = {
    "manifest_by_tag": _MANIFEST + "JOIN tags t ON t.manifest_id = m.id "
    "JOIN repositories r ON r.id = t.repository_id WHERE r.name = :repository AND t.name = :tag",
    "manifest_by_digest": _MANIFEST + "JOIN repositories r ON r.id = m.repository_id "
    "WHERE r.name = :repository AND m.digest = :digest",
    "blob_size": "SELECT b.size FROM blobs b "
    "JOIN repository_blobs l ON l.digest = b.digest "
    "JOIN repositories r ON r.id = l.repository_id "
    "WHERE r.name = :repository AND b.digest = :digest",
    # A blob held here, and whether this repository links it (the mirror links blobs that
    # another repository brought in once the upstream confirms this one has them).
    "cached_blob": "SELECT b.size, EXISTS (SELECT 1 FROM repository_blobs l "
    "JOIN repositories r ON r.id = l.repository_id "
    "WHERE r.name = :repository AND l.digest = b.digest) FROM blobs b WHERE b.digest = :digest",
    "tags_version": "SELECT id, tags_version FROM repositories WHERE name = :repository",
    # Tags in byte order, as the spec asks (PostgreSQL's default collation would not).
    "tags_after": "SELECT name FROM tags WHERE repository_id = :repository_id AND name > :last "
    "ORDER BY name {collate} LIMIT :limit",
}
_PARAM = re.compile(r":(\w+)")


@dataclass(frozen=True, slots=True)
class CachedBlob:
    size: int
    linked: bool  # to the repository asked about


class HotQueries:
    def __init__(self, db: Database) -> None:
        self.db = db
        postgres = not db.is_sqlite
        self._sql: dict[str, tuple[str, list[str]]] = {}
        for name, text in _SQL.items():
            text = text.format(collate='COLLATE "C"' if postgres else "")
            order = _PARAM.findall(text)
            if postgres:
                for i, param in enumerate(order, 1):
                    text = text.replace(f":{param}", f"${i}", 1)
            else:
                text = _PARAM.sub("?", text)
            self._sql[name] = (text, order)

    async def _rows(self, name: str, **params: Any) -> list[Any]:
        text, order = self._sql[name]
        values = [params[key] for key in order]
        async with self._driver() as driver:
            if self.db.is_sqlite:
                return list(await driver.execute_fetchall(text, values))
            return list(await driver.fetch(text, *values))

    @asynccontextmanager
    async def _driver(self) -> AsyncIterator[Any]:
        async with self.db.read() as conn:
            raw = await conn.get_raw_connection()
            yield raw.driver_connection

    async def manifest_by_tag(self, repository: str, tag: str) -> StoredManifest | None:
        rows = await self._rows("manifest_by_tag", repository=repository, tag=tag)
        return StoredManifest(rows[0][0], rows[0][1], bytes(rows[0][2])) if rows else None

    async def manifest_by_digest(self, repository: str, digest: str) -> StoredManifest | None:
        rows = await self._rows("manifest_by_digest", repository=repository, digest=digest)
        return StoredManifest(rows[0][0], rows[0][1], bytes(rows[0][2])) if rows else None

    async def blob_size(self, repository: str, digest: str) -> int | None:
        rows = await self._rows("blob_size", repository=repository, digest=digest)
        return int(rows[0][0]) if rows else None

    async def cached_blob(self, repository: str, digest: str) -> CachedBlob | None:
        rows = await self._rows("cached_blob", repository=repository, digest=digest)
        return CachedBlob(int(rows[0][0]), bool(rows[0][1])) if rows else None

    async def tags_version(self, repository: str) -> tuple[int, int] | None:
        """The repository's id and the version of its tag list."""
        rows = await self._rows("tags_version", repository=repository)
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    async def tags_after(self, repository_id: int, last: str | None, limit: int) -> list[str]:
        rows = await self._rows(
            "tags_after", repository_id=repository_id, last=last or "", limit=limit
        )
        return [row[0] for row in rows]
