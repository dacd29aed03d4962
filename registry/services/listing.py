"""Paginated lists: a repository's tags and the catalog of repositories."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from registry.errors import NameUnknown
from registry.metadata import queries
from registry.metadata.database import Database
from registry.metadata.hot import HotQueries

# A list without `n` still stops here and offers the rest through a Link header.
MAX_PAGE = 10_000


@dataclass(frozen=True)
class Page:
    items: list[str]
    more: bool


class ListingService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.hot = HotQueries(db)

    async def tags(self, repository: str, limit: int | None, last: str | None) -> Page:
        limit = MAX_PAGE if limit is None else min(limit, MAX_PAGE)
        repo_id = await self.hot.repository_id(repository)
        if repo_id is None:
            raise NameUnknown({"name": repository})
        if limit == 0:
            return Page([], False)
        items = await self.hot.tags_after(repo_id, last, limit + 1)
        return Page(items[:limit], len(items) > limit)

    async def catalog(
        self, limit: int | None, last: str | None, namespaces: Collection[str] | None = None
    ) -> Page:
        """Repository names in lexical order; only those in `namespaces`, if given."""
        limit = MAX_PAGE if limit is None else min(limit, MAX_PAGE)
        if limit == 0:
            return Page([], False)
        async with self.db.read() as conn:
            items = await queries.list_repositories(conn, last, limit + 1, namespaces)
        return Page(items[:limit], len(items) > limit)
