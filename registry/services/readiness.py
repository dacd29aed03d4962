"""Whether this process can serve (GET /ready): the database answers at the schema this
code knows, and the blob store is reachable and writable."""

from __future__ import annotations

from registry.errors import Unavailable
from registry.metadata import migrate
from registry.metadata.database import Database
from registry.storage import BlobStore
from registry.storage.base import StorageError


class Readiness:
    def __init__(self, db: Database, store: BlobStore, driver: str) -> None:
        self.db = db
        self.store = store
        self.driver = driver

    async def check(self) -> str | None:
        """The schema's revision when ready; else 503 UNAVAILABLE saying which part is
        not (the database layer answers 503 itself when the database is down)."""
        async with self.db.read() as conn:
            at = await migrate.revision(conn)
        if migrate.behind(at):
            raise Unavailable(
                {"database": at, "expected": migrate.head()},
                message=f"the database schema is at {at or 'nothing'}, this registry needs "
                f"{migrate.head()}: run `registry migrate` (serve does it at start)",
            )
        try:
            await self.store.check()
        except StorageError as exc:
            raise Unavailable(
                {"storage": self.driver}, message=f"blob store not ready: {exc}"
            ) from exc
        return at
