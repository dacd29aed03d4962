"""Pull counts and last-pull times, kept off the pull path.

A manifest GET only adds to a dict in this process (no I/O, no lock: the event loop runs
one request at a time). A worker in every process flushes the dict every
`FLUSH_SECONDS` in one transaction that adds to the counts in the database, so the
counts of all workers and replicas sum up: additions commute, and the last-pull time
is the later of the two. A process that dies loses at most its last few seconds of
counts; a clean shutdown flushes them. Pulls of repositories or manifests deleted before
the flush are dropped with them.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata import pulls as q
from registry.metadata.database import Database
from registry.metadata.models import ManifestPulls, RepositoryPulls, now

log = logging.getLogger("registry.pulls")
FLUSH_SECONDS = 5.0

Counts = dict[int, tuple[int, datetime]]


def _add(counts: Counts, ident: int, moment: datetime) -> None:
    count, _ = counts.get(ident, (0, moment))
    counts[ident] = (count + 1, moment)


class Pulls:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.repositories: Counts = {}
        self.manifests: Counts = {}

    def record(self, repository_id: int, manifest_id: int) -> None:
        """One pull of a manifest (0: not stored here)."""
        if repository_id and manifest_id:
            moment = now()
            _add(self.repositories, repository_id, moment)
            _add(self.manifests, manifest_id, moment)

    async def flush(self) -> int:
        """Write what was counted since the last flush; returns how many pulls."""
        repositories, manifests = self.repositories, self.manifests
        if not manifests:
            return 0
        self.repositories, self.manifests = {}, {}

        async def write(conn: AsyncConnection) -> None:
            await q.add(conn, RepositoryPulls, repositories)
            await q.add(conn, ManifestPulls, manifests)

        for attempt in range(3):
            try:
                await self.db.transact(write)
                break
            except IntegrityError:
                # PostgreSQL: a manifest deleted between the SELECT and its foreign-key
                # check. Run again: the SELECT no longer finds it.
                if attempt == 2:
                    raise
        return sum(count for count, _ in manifests.values())

    async def run(self) -> None:
        """The flushing worker of `registry serve`; flushes once more when cancelled."""
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                try:
                    await self.flush()
                except Exception:
                    log.exception("could not record pull counts; they are lost for now")
        finally:
            try:
                await asyncio.shield(self.flush())
            except Exception:
                log.exception("could not record the last pull counts before shutting down")
