"""The audit log, read: events (metadata/events.py) newest first, filtered."""

from __future__ import annotations

from typing import Any

from registry.metadata import events
from registry.metadata.database import Database
from registry.metadata.events import AuditFilter as AuditFilter


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def search(
        self, which: AuditFilter, before: int | None, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """Up to `limit` events (id, body), newest first, below id `before` if given."""
        async with self.db.read() as conn:
            return await events.audit(conn, which, before, limit)
