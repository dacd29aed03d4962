"""Paginated lists: a repository's tags and the catalog of repositories."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection

from registry.errors import NameUnknown
from registry.metadata import repositories, tags
from registry.metadata.database import Database
from registry.paging import Window, fetch
from registry.services.tag_cache import LARGEST_CACHED, TagCache, TagList

# A list without `n` still stops here and offers the rest through a Link header.
MAX_PAGE = 10_000


class ListingService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.tag_cache = TagCache()

    async def tags(self, repository: str, limit: int | None, last: str | None) -> Window[str]:
        limit = MAX_PAGE if limit is None else min(limit, MAX_PAGE)
        found = await tags.version(self.db, repository)
        if found is None:
            raise NameUnknown({"name": repository})
        repo_id, version = found
        if limit == 0:
            return Window([], False)
        cached = self.tag_cache.get(repo_id, version)
        if cached is None:
            names = await tags.after(self.db, repo_id, None, LARGEST_CACHED + 1)
            cached = TagList(version, names if len(names) <= LARGEST_CACHED else None)
            self.tag_cache.put(repo_id, cached)
        if cached.names is None:
            return await fetch(lambda n: tags.after(self.db, repo_id, last, n), limit)
        # Python orders str by code point, as SQL orders UTF-8 bytes: `last` need not be a
        # valid tag.
        start = bisect_right(cached.names, last) if last else 0
        return Window(cached.names[start : start + limit], start + limit < len(cached.names))

    async def catalog(
        self, limit: int | None, last: str | None, namespaces: Collection[str] | None = None
    ) -> Window[str]:
        """Repository names in lexical order; only those in `namespaces`, if given."""
        limit = MAX_PAGE if limit is None else min(limit, MAX_PAGE)
        if limit == 0:
            return Window([], False)
        async with self.db.read() as conn:
            return await fetch(
                lambda n: repositories.list_repositories(conn, last, n, namespaces), limit
            )
