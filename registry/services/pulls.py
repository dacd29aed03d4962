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
import contextlib
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.digest import is_digest
from registry.errors import Unavailable
from registry.metadata import activity, events
from registry.metadata import pulls as q
from registry.metadata.database import Database
from registry.metadata.manifests import StoredManifest
from registry.metadata.models import ManifestPulls, RepositoryPulls, now
from registry.metrics import UNSIGNED_PULLS
from registry.services.webhooks import Webhooks

log = logging.getLogger("registry.pulls")
FLUSH_SECONDS = 5.0

Counts = dict[int, tuple[int, datetime]]


def _add(counts: Counts, ident: int, moment: datetime) -> None:
    count, _ = counts.get(ident, (0, moment))
    counts[ident] = (count + 1, moment)


class Pulls:
    def __init__(self, db: Database, webhooks: Webhooks, *, audit_pulls: bool) -> None:
        self.db = db
        self.webhooks = webhooks
        self.audit_pulls = audit_pulls
        # Whether pulls make events (a row each): pull auditing is on, or an endpoint
        # wants them (looked up at each flush).
        self.events_wanted = audit_pulls
        self.repositories: Counts = {}
        self.manifests: Counts = {}
        self.events: list[dict[str, Any]] = []

    def record(self, found: StoredManifest, repository: str, reference: str) -> None:
        """One pull of a manifest, counted if it is stored here; its event is kept for
        the flush when events are wanted (they are written with the counts, so a
        process that dies loses those of its last seconds too)."""
        moment = now()
        if found.repository_id and found.manifest_id:
            _add(self.repositories, found.repository_id, moment)
            _add(self.manifests, found.manifest_id, moment)
        if self.events_wanted:
            target = events.descriptor(
                repository,
                "manifests",
                found.digest,
                found.media_type,
                len(found.content),
                tag=None if is_digest(reference) else reference,
            )
            self.events.append(
                events.event("pull", repository=repository, target=target, moment=moment)
            )

    def unsigned(
        self, found: StoredManifest, repository: str, reference: str, refused: bool
    ) -> None:
        """A pull of an image no trusted key signed, under an audit or enforce policy:
        counted, and an audit event kept for the flush (refused, or served: audit, or a
        signer's read under enforce)."""
        UNSIGNED_PULLS.labels("refused" if refused else "served").inc()
        target = {"digest": found.digest, "mediaType": found.media_type}
        if not is_digest(reference):
            target["tag"] = reference
        self.events.append(
            events.event(
                "pull.unsigned",
                repository=repository,
                target=target,
                outcome="denied" if refused else "success",
                detail={"policy": found.unsigned}
                | ({"read_by": "pusher"} if found.unsigned == "enforce" and not refused else {}),
            )
        )

    async def flush(self) -> int:
        """Write what was counted since the last flush; returns how many pulls."""
        repositories, manifests, pulled = self.repositories, self.manifests, self.events
        self.repositories, self.manifests, self.events = {}, {}, []
        await self._refresh_wanted()
        if not manifests and not pulled:
            return 0

        by_repository = {ident: count for ident, (count, _) in repositories.items()}

        async def write(conn: AsyncConnection) -> None:
            await q.add(conn, RepositoryPulls, repositories)
            await q.add(conn, ManifestPulls, manifests)
            await activity.add_pulls(conn, now().date(), by_repository)  # the dashboard's
            await events.record_all(conn, pulled)

        for attempt in range(3):
            try:
                await self.db.transact(write)
                break
            except IntegrityError:
                # PostgreSQL: a manifest deleted between the SELECT and its foreign-key
                # check. Run again: the SELECT no longer finds it.
                if attempt == 2:
                    raise
        return sum(count for count, _ in manifests.values()) or len(pulled)

    async def _refresh_wanted(self) -> None:
        if self.audit_pulls:
            return
        # The database away: keep what was known; the write below says so.
        with contextlib.suppress(Unavailable):
            self.events_wanted = await self.webhooks.pull_wanted()

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
