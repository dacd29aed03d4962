"""Retention: the tags a namespace's policy (services/policies.py Retention) no longer
keeps are deleted, with the manifests left without a tag, their referrers (signatures,
SBOMs) and the platform manifests of their indexes; never one that something kept still
needs (services/gc.py's rules for untagged manifests), never an immutable tag. The blobs
they leave unreferenced are queued for garbage collection.

Evaluated by the collection worker every gc.retention_interval_seconds and by
`registry retention`; `--dry-run` runs the same transactions and rolls them back, so what
it prints is exactly what a run would do.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from registry import context
from registry.metadata import events, manifests
from registry.metadata import gc as gc_queries
from registry.metadata import policies as policy_queries
from registry.metadata import retention as q
from registry.metadata.database import Database
from registry.metadata.models import Manifest, now
from registry.services.policies import Policy, Retention, from_stored

log = logging.getLogger("registry.retention")


@dataclass
class Outcome:
    """What retention did (or, in a dry run, would do) in one repository."""

    repository: str
    tags: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    bytes_freed: int = 0  # once garbage collection has run


class _DryRun(Exception):
    """Raised inside a dry run's transaction to roll it back."""


def doomed_tags(
    policy: Policy, retention: Retention, tags: list[q.TagRow], moment: datetime
) -> set[str]:
    """The tags retention deletes, of a repository's tags listed most recent first."""
    doomed = set()
    for rank, tag in enumerate(tags):
        if retention.keeps(tag.name) or policy.immutable_rule(tag.name):
            continue
        if retention.keep_last is not None and rank < retention.keep_last:
            continue
        days = retention.older_than_days
        if days is not None and moment - tag.pushed_at <= timedelta(days=days):
            continue
        doomed.add(tag.name)
    return doomed


class RetentionService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def run(self, *, dry_run: bool = False, namespace: str | None = None) -> list[Outcome]:
        """Apply every namespace's retention policy (or one namespace's); returns what
        went, repository by repository (only those where something did)."""
        async with self.db.read() as conn:
            stored = await policy_queries.policies_with_retention(conn)
        outcomes = []
        for row in stored:
            if namespace is None or row.namespace == namespace:
                outcomes += await self._namespace(from_stored(row.namespace, row), dry_run)
        if not dry_run:
            for outcome in outcomes:
                log.info(
                    "retention in %s: deleted %d tags and %d manifests (%d bytes to free)",
                    outcome.repository,
                    len(outcome.tags),
                    len(outcome.manifests),
                    outcome.bytes_freed,
                )
        return outcomes

    async def preview(self, policy: Policy) -> list[Outcome]:
        """What `policy` (saved or not) would delete in its namespace now: the same
        transactions as a run, rolled back."""
        return await self._namespace(policy, dry_run=True) if policy.retention else []

    async def _namespace(self, policy: Policy, dry_run: bool) -> list[Outcome]:
        async with self.db.read() as conn:
            repositories = await q.repositories_in(conn, policy.namespace)
        outcomes = []
        for repository_id, name in repositories:
            outcome = await self._repository(policy, repository_id, name, dry_run)
            if outcome.tags:
                outcomes.append(outcome)
        return outcomes

    async def _repository(
        self, policy: Policy, repository_id: int, name: str, dry_run: bool
    ) -> Outcome:
        outcome = Outcome(name)

        async def apply(conn: AsyncConnection) -> None:
            await self._apply(conn, policy, repository_id, outcome)
            if dry_run:
                raise _DryRun

        with contextlib.suppress(_DryRun):  # rolled back: what it did is all in `outcome`
            await self.db.transact(apply)
        return outcome

    async def _apply(
        self, conn: AsyncConnection, policy: Policy, repository_id: int, outcome: Outcome
    ) -> None:
        assert policy.retention is not None
        tags = await q.tags_by_push(conn, repository_id)
        doomed = doomed_tags(policy, policy.retention, tags, now())
        if not doomed:
            return
        names: dict[int, set[str]] = defaultdict(set)
        digest_of: dict[int, str] = {}
        for tag in tags:
            names[tag.manifest_id].add(tag.name)
            digest_of[tag.manifest_id] = tag.digest
        # Manifests all of whose tags go, then what follows them (their referrers, their
        # indexes' platform manifests) unless a tag that stays holds it.
        candidates = {m for m, held in names.items() if held <= doomed}
        frontier = [digest_of[m] for m in candidates]
        while frontier:
            found = await q.followers(conn, repository_id, frontier)
            new = [(m, d) for m, d in found if m not in candidates and names[m] <= doomed]
            candidates.update(m for m, _ in new)
            digest_of.update(new)
            frontier = [d for _, d in new]
        # Locks in a push's order: manifests, then (in delete_manifests) blobs, then tags.
        await q.lock_manifests(conn, sorted(candidates))
        due = [gc_queries.Candidate(m, repository_id, digest_of[m]) for m in sorted(candidates)]
        _, kept = await gc_queries.needed(conn, due, tagged=set())
        going = [m for m in sorted(candidates) if m not in kept]
        blobs = await q.blobs_of(conn, going)
        if going:
            await manifests.delete_manifests(conn, Manifest.id.in_(going))
        await q.delete_tags(conn, repository_id, sorted(doomed))
        outcome.tags = sorted(doomed)
        outcome.manifests = sorted(digest_of[m] for m in going)
        outcome.bytes_freed = await q.freed_bytes(conn, blobs)
        by = context.system("retention")
        rows = [
            events.event("delete", repository=outcome.repository, target={"tag": tag}, by=by)
            for tag in outcome.tags
        ]
        rows += [
            events.event("delete", repository=outcome.repository, target={"digest": d}, by=by)
            for d in outcome.manifests
        ]
        await events.record_all(conn, rows)
