"""Expiry of the mirror's cache: per upstream, manifests no one has pulled for
`keep_days` go, with their tags; then, while the cache holds more than `max_bytes`, the
least recently pulled go first. The blobs they leave unreferenced are queued by the
triggers and deleted by the collection pass that runs this, with its safety: a blob a
lease holds (fetched, or served to a client, within a lease) is kept until the lease
ends, and one referenced anywhere else (a hosted repository, another upstream's cache)
is never deleted. A manifest an index or a referrer that stays needs stays too
(metadata/gc.py `needed`).

Last pulls come from the pull counts (services/pulls.py), flushed every few seconds in
one write per process: a GET does no write for them.

Each batch is one transaction that takes the `mirror_expiry` counter's row first, so
the replicas' passes take turns: the next one re-measures the cache after the first
committed, and no two evict for the same excess. A pull recorded between a batch's
choice and its delete does not save the manifest; the client then fetches it (and
any blob already gone) from the upstream again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncConnection

from registry import context
from registry.config import MirrorSettings, host_patterns
from registry.metadata import counters
from registry.metadata import expiry as q
from registry.metadata.database import Database
from registry.metadata.gc import Candidate, delete_candidates, needed
from registry.metadata.models import now

log = logging.getLogger("registry.mirror")

BATCH = 200
MAX_BATCHES = 50
LOCK = "mirror_expiry"
# Totals in the counters table, with the mirror's (proxy/counters.py).
EXPIRY_COUNTERS = {
    "manifests_expired": "cached manifests deleted because no one pulled them for keep_days",
    "manifests_evicted": "cached manifests evicted, least recently pulled first, for max_bytes",
}


@dataclass(frozen=True)
class Cache:
    """One upstream's cache and its limits."""

    url: str
    prefix: str
    keep_days: float
    max_bytes: int
    repositories: ColumnElement[bool]


@dataclass
class Expired:
    expired: int = 0
    evicted: int = 0


class CacheExpiry:
    def __init__(self, db: Database, settings: MirrorSettings) -> None:
        self.db = db
        prefixes = [u.prefix for u in settings.upstreams]
        patterns = host_patterns(settings.allow_hosts)
        hosted_apart = not settings.mirror_only
        self.caches = [
            Cache(
                u.url,
                u.prefix,
                settings.keep_days if u.keep_days is None else u.keep_days,
                settings.max_bytes if u.max_bytes is None else u.max_bytes,
                q.cache_of(u.prefix, prefixes, patterns, hosted_apart),
            )
            for u in settings.upstreams
        ]
        # The hosts a pattern lets in share its cache, with the mirror's limits.
        self.caches += [
            Cache(
                f"https://{pattern}",
                pattern,
                settings.keep_days,
                settings.max_bytes,
                q.pattern_cache(pattern, prefixes, hosted_apart),
            )
            for pattern in patterns
        ]

    async def usage(self) -> dict[str, int]:
        """Each upstream's cache size, by prefix."""
        async with self.db.read() as conn:
            return {c.prefix: await q.cache_bytes(conn, c.repositories) for c in self.caches}

    async def run(self, *, expire: bool = True) -> Expired:
        """Expire (with `expire`) and evict, every upstream's cache in turn."""
        done = Expired()
        for cache in self.caches:
            if expire and cache.keep_days:
                cutoff = now() - timedelta(days=cache.keep_days)
                done.expired += await self._batches(cache, "expired", cutoff)
            if cache.max_bytes:
                done.evicted += await self._batches(cache, "evicted", None)
        return done

    async def _batches(self, cache: Cache, reason: str, cutoff: datetime | None) -> int:
        kept: list[int] = []
        deleted = 0
        for _ in range(MAX_BATCHES):
            batch = partial(self._batch, cache=cache, cutoff=cutoff, kept=kept)
            step = await self.db.transact(batch)
            if step is None:
                break
            doomed, stayed = step
            kept += stayed
            deleted += len(doomed)
            for digest in doomed:
                log.debug("%s %s from the cache of %s", reason, digest, cache.url)
        if deleted:
            log.info(
                "%s %d manifests from the cache of %s (%s)",
                reason,
                deleted,
                cache.url,
                f"not pulled for {cache.keep_days:g} days"
                if cutoff
                else f"over {cache.max_bytes} bytes",
            )
        return deleted

    async def _batch(
        self, conn: AsyncConnection, *, cache: Cache, cutoff: datetime | None, kept: list[int]
    ) -> tuple[list[str], list[int]] | None:
        """One batch: (digests deleted, ids kept), or None when nothing is left to do."""
        await counters.lock_counter(conn, LOCK)
        if cutoff is None:
            excess = await q.cache_bytes(conn, cache.repositories) - cache.max_bytes
            if excess <= 0:
                return None
            due = await q.least_recent(conn, cache.repositories, BATCH, skip=kept)
            due = _enough(due, await q.manifest_bytes(conn, [m.id for m in due]), excess)
        else:
            due = await q.least_recent(conn, cache.repositories, BATCH, before=cutoff, skip=kept)
        if not due:
            return None
        _, stay = await needed(conn, due, tagged=set())
        doomed = [m for m in due if m.id not in stay]
        reason = "expired" if cutoff else "evicted"
        deleted = await delete_candidates(conn, doomed, reason, context.system("mirror"))
        await counters.add_counters(conn, {f"manifests_{reason}": deleted})
        return [m.digest for m in doomed], sorted(stay)


def _enough(due: list[Candidate], sizes: dict[int, int], excess: int) -> list[Candidate]:
    """The least recently pulled of `due` whose sizes add up to `excess`: no more are
    evicted than could be needed (shared blobs free less, so the next batch may take
    more)."""
    chosen, total = [], 0
    for manifest in due:
        if total >= excess:
            break
        chosen.append(manifest)
        total += sizes.get(manifest.id, 0)
    return chosen
