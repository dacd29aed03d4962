"""Mirror counters kept in the database, so that metrics and the admin API show totals over
every worker and replica. Each process adds in memory and flushes every few seconds, and
when asked for the totals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial

from registry.errors import Unavailable
from registry.metadata import counters as q
from registry.metadata import mirror as mq
from registry.metadata.database import Database
from registry.proxy.upstream import Upstream
from registry.services.expiry import EXPIRY_COUNTERS

log = logging.getLogger("registry.mirror")

FLUSH_SECONDS = 5.0

# name: what it counts (the metric's help text).
COUNTERS = {
    "manifest_hits": "manifests served from the cache without asking the upstream",
    "manifest_revalidations": "stale tags confirmed unchanged by a HEAD to the upstream",
    "manifest_misses": "manifests fetched from the upstream",
    "blob_hits": "blobs served from the cache",
    "blob_misses": "blobs fetched from the upstream (one per blob, however many asked)",
    "upstream_errors": "upstream requests that failed, were refused or rate-limited",
    "offline_served": "stale manifests served because the upstream failed",
    "upstream_bytes": "blob bytes fetched from the upstream",
    "cache_bytes": "blob bytes served from the cache",
    "negative_hits": "requests answered from the memory of an upstream's recent 404",
    "backoff_refusals": "requests not sent to an upstream backing off after a 429",
    "unsigned_refused": "manifests refused: signed by no key of their upstream's signed_by",
    **EXPIRY_COUNTERS,
}


class Counters:
    """The counters, and what the upstreams said of their rate limits (written with
    them: the upstream with the prefix `p` calls `changed`)."""

    def __init__(self, db: Database, upstreams: Mapping[str, Upstream]) -> None:
        self.db = db
        self.upstreams = upstreams
        self._pending: Counter[str] = Counter()
        self._changed: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None
        for prefix, upstream in upstreams.items():
            self.watch(prefix, upstream)

    def watch(self, prefix: str, upstream: Upstream) -> None:
        """Write down what `upstream` says of its rate limit, as the one under `prefix`."""
        upstream.changed = partial(self._upstream_changed, prefix)

    def add(self, name: str, amount: int = 1) -> None:
        self._pending[name] += amount
        self._flush_soon()

    def _upstream_changed(self, prefix: str) -> None:
        self._changed.add(prefix)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, Counter()
        changed, self._changed = self._changed, set()
        if not pending and not changed:
            return
        try:
            async with self.db.write() as conn:
                await q.add_counters(conn, pending)
                await mq.save_upstreams(conn, [self._state(p) for p in changed])
        except Unavailable as exc:
            # Counts are worth less than requests: keep them for the next flush.
            self._pending.update(pending)
            self._changed.update(changed)
            log.warning("could not save mirror counters: %s", exc.text)

    def _state(self, prefix: str) -> dict[str, object]:
        upstream = self.upstreams[prefix]
        limit = upstream.rate_limit
        backoff = upstream.backoff_until
        return {
            "prefix": prefix,
            "ratelimit_limit": limit.limit if limit else None,
            "ratelimit_remaining": limit.remaining if limit else None,
            "seen_at": limit.seen_at if limit else None,
            "backoff_until": datetime.fromtimestamp(backoff, UTC) if backoff else None,
        }

    async def totals(self) -> dict[str, int]:
        await self.flush()
        async with self.db.read() as conn:
            stored = await q.counters(conn)
        return {name: stored.get(name, 0) for name in COUNTERS}

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
