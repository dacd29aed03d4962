"""Tag lists kept in memory by each worker, so that listing a repository's tags costs one
indexed lookup, like a manifest GET, whatever the number of tags.

An entry is used only while its version equals the repository's `tags_version`, which a
database trigger sets to a new random value whenever a tag is added, renamed or removed
(migration 0005). Every request reads that column, so a list changed by any code path,
worker or replica is never served stale.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# Tag names kept per worker over all repositories (about 60 bytes each in memory).
CACHED_NAMES = 250_000
# Repositories with more tags than this are read page by page from the database.
LARGEST_CACHED = 25_000


@dataclass(frozen=True, slots=True)
class TagList:
    version: int
    names: list[str] | None  # in byte order; None when the repository is too large


class TagCache:
    def __init__(self, capacity: int = CACHED_NAMES) -> None:
        self.capacity = capacity
        self._lists: OrderedDict[int, TagList] = OrderedDict()
        self._size = 0

    def get(self, repository_id: int, version: int) -> TagList | None:
        found = self._lists.get(repository_id)
        if found is None or found.version != version:
            return None
        self._lists.move_to_end(repository_id)
        return found

    def put(self, repository_id: int, entry: TagList) -> None:
        old = self._lists.pop(repository_id, None)
        if old is not None:
            self._size -= _size(old)
        self._lists[repository_id] = entry
        self._size += _size(entry)
        while self._size > self.capacity:
            _, evicted = self._lists.popitem(last=False)
            self._size -= _size(evicted)


def _size(entry: TagList) -> int:
    return 1 + len(entry.names or ())
