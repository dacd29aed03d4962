"""Garbage collection, driven by the database alone: what nothing references is queued in
the blobs table (migration 0007) the moment it becomes unreferenced, and found with one
indexed query, with no walk of the storage.

This first part finds garbage; deleting it (and the protocol that keeps concurrent
pushes safe while it does) is the next.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.metadata import gc as q
from registry.metadata.database import Database
from registry.metadata.models import now


@dataclass(frozen=True)
class Garbage:
    blobs: list[tuple[str, int]]  # (digest, size), collectable now
    queued: int  # blobs queued for a look, due or not

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.blobs)


class GarbageCollector:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def find(self, limit: int = 10_000) -> Garbage:
        """What a collection run would delete now, at most `limit` blobs."""
        async with self.db.read() as conn:
            return Garbage(await q.collectable(conn, now(), limit), await q.queued(conn))
