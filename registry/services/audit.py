"""The audit log, read: events (metadata/events.py) newest first, filtered."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from registry.errors import Denied, Invalid
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


def audit_filter(
    owned: Collection[str] | None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    namespace: str | None = None,
) -> AuditFilter:
    """What a caller who owns `owned` (None: an admin, all) may read of the log: a
    namespace's owners read that namespace's events, admins everything."""
    if owned is not None:
        if namespace is None:
            raise Denied(message="only admins read the whole audit log: ask for ?namespace=")
        if namespace not in owned:
            raise Denied(message=f"only owners of {namespace!r} read its audit log")
    if since and until and since >= until:
        raise Invalid(message="since must come before until")
    return AuditFilter(
        since=since, until=until, actor=actor, action=action, outcome=outcome, namespace=namespace
    )
