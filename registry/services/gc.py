"""Garbage collection, driven by the database alone: what nothing references is queued in
the blobs table (migrations 0007, 0008) the moment it becomes unreferenced, and found
with one indexed range, with no walk of the storage.

A pass takes the due blobs in batches. For each batch, one transaction locks their rows,
re-checks references and leases, requeues what is live, removes the rows of the rest
and leaves tombstones; a second transaction deletes their bytes and then the tombstones.
Why pushes racing a pass are safe is told in services/leases.py. Every `registry serve`
process runs passes (`gc.interval_seconds`); on PostgreSQL the row locks are taken with
SKIP LOCKED, so replicas share the queue and never do one blob twice; on SQLite the
writer lock takes them in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncConnection

from registry import context, readable
from registry.config import GcSettings
from registry.digest import Digest
from registry.metadata import activity, counters, events, usage
from registry.metadata import gc as q
from registry.metadata.database import Database
from registry.metadata.models import now
from registry.services.expiry import CacheExpiry
from registry.services.retention import RetentionService
from registry.services.uploads import UploadService
from registry.storage import BlobStore

log = logging.getLogger("registry.gc")

# Blobs locked and decided in one transaction.
BATCH = 500
# Batches in one pass at most; the next pass goes on where it stopped.
MAX_BATCHES = 200
# Tombstones older than this belong to a pass that died between its two transactions:
# the next pass deletes their bytes (again) and clears them.
TOMBSTONE_SECONDS = 60


# Totals in the counters table (gc_<name>), for /metrics: name -> what it counts.
GC_COUNTERS = {
    "gc_runs": "garbage collection passes, over every process",
    "gc_errors": "garbage collection passes that failed (the log says why)",
    "gc_tags_deleted": "tags deleted by retention policies",
    "gc_manifests_deleted": "manifests deleted by retention and the untagged policy",
    "gc_blobs_deleted": "blobs deleted by garbage collection",
    "gc_bytes_freed": "bytes of the blobs garbage collection deleted",
    "gc_postponed": "blobs due for deletion that a lease kept for later",
}
# Runs shown by GET /api/v1/gc.
RECENT_RUNS = 20


@dataclass(frozen=True)
class Garbage:
    blobs: list[tuple[str, int]]  # (digest, size), collectable now
    queued: int  # blobs queued for a look, due or not

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.blobs)


@dataclass
class Pass:
    """What one collection pass did."""

    tags_deleted: int = 0  # by retention
    manifests_deleted: int = 0  # by retention and the untagged policy
    blobs_deleted: int = 0
    bytes_freed: int = 0
    postponed: int = 0  # due, but a lease still held them
    uploads_ended: int = 0
    error: str | None = None

    @property
    def busy(self) -> bool:
        return bool(
            self.tags_deleted
            or self.manifests_deleted
            or self.blobs_deleted
            or self.postponed
            or self.uploads_ended
            or self.error
        )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class GarbageCollector:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        uploads: UploadService,
        retention: RetentionService,
        settings: GcSettings,
        expiry: CacheExpiry | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.uploads = uploads
        self.retention = retention
        self.settings = settings
        # The mirror's cache expiry, when this registry is a mirror.
        self.expiry = expiry
        self._last_upload_sweep = float("-inf")
        self._last_retention = float("-inf")

    async def find(self, limit: int = 10_000) -> Garbage:
        """What a collection pass would delete now, at most `limit` blobs."""
        async with self.db.read() as conn:
            return Garbage(await q.collectable(conn, now(), limit), await q.queued(conn))

    async def waiting(self) -> dict[str, Any]:
        """What stored bytes nothing needs wait for (metadata/gc.py, Waiting), and when
        they go: GET /api/v1/gc's `waiting`, the status page, `registry gc --dry-run`."""
        moment = now()
        async with self.db.read() as conn:
            found = await q.waiting(conn, moment)
            held = await q.held_until(conn, moment, lock=False)
        hours = self.settings.untagged_hours
        first_due = None
        if hours and found.untagged_since is not None:
            first_due = max(found.untagged_since + timedelta(hours=hours), moment)
        return {
            "held_until": _iso(held),
            "due": {"blobs": found.due_blobs, "bytes": found.due_bytes},
            "leased": {
                "blobs": found.leased_blobs,
                "bytes": found.leased_bytes,
                "until": _iso(found.leased_until),
            },
            "untagged": {
                "manifests": found.untagged_manifests,
                "bytes": found.untagged_bytes,
                "since": _iso(found.untagged_since),
                "first_due": _iso(first_due),
            },
        }

    def explain(self, waiting: dict[str, Any]) -> list[str]:
        """`waiting` in sentences an operator reads: how much, why it stays, until when."""
        settings, lines = self.settings, []
        if waiting["held_until"]:
            lines.append(
                f"Deletions are held until {readable.when(waiting['held_until'])} "
                "(`registry gc release` ends the hold)."
            )
        due, leased, untagged = waiting["due"], waiting["leased"], waiting["untagged"]
        every = f"every {settings.interval_seconds:g} s" if settings.interval_seconds else "cron"
        lines.append(
            f"{readable.size(due['bytes'])} in {due['blobs']} blobs: due, deleted by the next pass "
            f"({every}, gc.interval_seconds)."
        )
        lease = settings.blob_lease_seconds
        lines.append(
            f"{readable.size(leased['bytes'])} in {leased['blobs']} blobs nothing references: "
            f"kept by their lease, {readable.duration(lease)} to "
            f"{readable.duration(2 * lease)} after the last upload, mount or HEAD of each "
            "(gc.blob_lease_seconds)"
            + (f"; the last ends at {readable.when(leased['until'])}." if leased["until"] else ".")
        )
        held = (
            f"{readable.size(untagged['bytes'])} held by {untagged['manifests']} untagged "
            "manifests (no tag points at them)"
        )
        if not untagged["manifests"]:
            lines.append(f"{held}.")
        elif settings.untagged_hours:
            lines.append(
                f"{held}: each is deleted {settings.untagged_hours:g} hours after it lost its "
                "last tag (gc.untagged_hours), the first at "
                f"{readable.when(untagged['first_due'])}."
            )
        else:
            lines.append(
                f"{held}: kept until deleted, since gc.untagged_hours is 0. Delete them in "
                "the console (a repository's Untagged manifests) or with DELETE "
                "/api/v1/repositories/NAME/-/manifests/DIGEST; their blobs then go within "
                "a pass, or once their lease ends."
            )
        return lines

    async def hold(self, until: datetime | None, holder: str = "") -> datetime | None:
        """Hold deletions until `until` (None: release); returns the hold now in force.
        Passes deciding a batch when the hold is taken finish first (metadata/gc.py)."""
        async with self.db.write() as conn:
            await q.hold(conn, until, holder)
            held = await q.held_until(conn, now())
            detail = {"until": _iso(held), "holder": holder}
            await events.record(conn, "gc.hold" if until else "gc.release", detail=detail)
            return held

    async def queued(self) -> int:
        async with self.db.read() as conn:
            return await q.queued(conn)

    async def totals(self) -> dict[str, int]:
        async with self.db.read() as conn:
            stored = await counters.counters(conn, "gc_")
        return {name: stored.get(name, 0) for name in GC_COUNTERS}

    async def status(self) -> dict[str, Any]:
        """What GET /api/v1/gc shows: the settings, the queue, totals and recent runs."""
        async with self.db.read() as conn:
            moment = now()
            queue = {
                "blobs": await q.queued(conn),
                "due": await q.due_count(conn, moment),
                "reclaimable_bytes": await usage.reclaimable(conn, moment),
                "tombstones": await q.tombstone_count(conn),
            }
            runs = await q.recent_runs(conn, RECENT_RUNS)
            held_until = await q.held_until(conn, moment, lock=False)
        settings = self.settings
        return {
            "held_until": held_until.isoformat() if held_until else None,
            "settings": {
                "blob_lease_seconds": settings.blob_lease_seconds,
                "interval_seconds": settings.interval_seconds,
                "untagged_hours": settings.untagged_hours,
                "upload_ttl_hours": settings.upload_ttl_hours,
                "retention_interval_seconds": settings.retention_interval_seconds,
            },
            "queue": queue,
            "waiting": await self.waiting(),
            "totals": await self.totals(),
            "runs": runs,
        }

    async def collect(
        self, worker: str = "cli", *, sweep_uploads: bool = True, retention: bool = False
    ) -> Pass:
        """One pass: apply retention policies (with `retention`), expire and evict the
        mirror's cache, delete manifests
        untagged for long (if gc.untagged_hours says so), clear tombstones left by a pass
        that died, collect every due blob (up to MAX_BATCHES batches), and end abandoned
        upload sessions; fold the usage deltas into the namespaces' totals."""
        started, clock = now(), time.monotonic()
        done = Pass()
        try:
            if retention:
                for outcome in await self.retention.run():
                    done.tags_deleted += len(outcome.tags)
                    done.manifests_deleted += len(outcome.manifests)
                async with self.db.write() as conn:
                    await counters.add_counters(
                        conn,
                        {
                            "gc_tags_deleted": done.tags_deleted,
                            "gc_manifests_deleted": done.manifests_deleted,
                        },
                    )
            if self.expiry is not None:
                expired = await self.expiry.run()
                done.manifests_deleted += expired.expired + expired.evicted
            if self.settings.untagged_hours:
                for _ in range(MAX_BATCHES):
                    if await self._untagged_batch(done) < BATCH:
                        break
            stale = now() - timedelta(seconds=TOMBSTONE_SECONDS)
            self._deleted(done, await self._delete_bytes(before=stale))
            for _ in range(MAX_BATCHES):
                if await self._batch(done, started) < BATCH:
                    break
            async with self.db.write() as conn:
                await usage.fold(conn)
                await activity.record_stored(conn, now().date())  # the dashboard's day
            if sweep_uploads:
                done.uploads_ended = await self.uploads.purge(
                    timedelta(hours=self.settings.upload_ttl_hours)
                )
        except Exception as exc:
            done.error = f"{type(exc).__name__}: {exc}"
            log.error(
                "garbage collection pass failed after deleting %d blobs: %s; the next pass "
                "goes on from there",
                done.blobs_deleted,
                done.error,
            )
        await self._record(done, started, time.monotonic() - clock, worker)
        return done

    async def _untagged_batch(self, done: Pass) -> int:
        """Delete one batch of manifests untagged for longer than gc.untagged_hours;
        returns how many were due. Their blobs are queued by the triggers, for the blob
        batches that follow."""
        cutoff = now() - timedelta(hours=self.settings.untagged_hours)

        async def decide(conn: AsyncConnection) -> tuple[list[q.Candidate], list[int], int]:
            due = await q.lock_untagged(conn, cutoff, BATCH)
            # Re-read after the lock: a push holding one of them (a tag, an index listing
            # it) was skipped, or committed first and is seen here.
            tagged, kept = await q.needed(conn, due)
            doomed = [m.id for m in due if m.id not in tagged | kept]
            await q.requeue_untagged(conn, sorted(tagged), None)
            # Looked at again in untagged_hours, when what keeps them may be gone.
            await q.requeue_untagged(conn, sorted(kept), now())
            candidates = [m for m in due if m.id in doomed]
            deleted = await q.delete_candidates(conn, candidates, "untagged", context.system("gc"))
            await counters.add_counters(conn, {"gc_manifests_deleted": deleted})
            return due, doomed, deleted

        due, doomed, deleted = await self.db.transact(decide)
        done.manifests_deleted += deleted
        for manifest in due:
            if manifest.id in doomed:
                log.debug(
                    "deleted untagged manifest %s (repository id %d)",
                    manifest.digest,
                    manifest.repository_id,
                )
        return len(due)

    async def _batch(self, done: Pass, started: datetime) -> int:
        """Decide one batch of due blobs and delete the garbage among them; returns how
        many were due. Leases are judged at the moment the pass `started`: a request
        that came within its lease and then waited for this pass (on SQLite's writer
        lock, or a row lock) may run only after that lease has ended, and this pass
        must still keep its blobs. The next pass sees what that request committed."""
        token = str(uuid.uuid4())

        async def decide(conn: AsyncConnection) -> tuple[int, list[str], list[q.Due]]:
            if await q.held_until(conn, now()):
                return 0, [], []  # a backup is copying the blobs: nothing goes meanwhile
            due = await q.lock_due(conn, now(), BATCH, leases_at=started)
            # Locked rows are re-read here, after any push that held them committed: a
            # reference stored by then is seen, a lease renewed by then too.
            live = await q.referenced(conn, [blob.digest for blob in due])
            leased = [b.digest for b in due if b.digest not in live and b.leased]
            garbage = [b for b in due if b.digest not in live and not b.leased]
            await q.requeue(conn, sorted(live), None)
            await q.requeue_at_lease_end(conn, leased)
            if garbage:
                await q.bury(conn, garbage, token, now())
            await counters.add_counters(conn, {"gc_postponed": len(leased)})
            return len(due), leased, garbage

        count, leased, garbage = await self.db.transact(decide)
        done.postponed += len(leased)
        if garbage:
            self._deleted(done, await self._delete_bytes(token=token))
        return count

    async def _delete_bytes(
        self, *, token: str | None = None, before: datetime | None = None
    ) -> list[tuple[str, int]]:
        """Delete the bytes of one pass's tombstones (or stale ones), then the tombstones,
        holding them locked meanwhile: a pass that resumes late finds none of its own
        left, so it never deletes bytes stored again since. Shielded from cancellation:
        a stopping process finishes the batch it started."""

        async def delete(conn: AsyncConnection) -> list[tuple[str, int]]:
            rows = await q.lock_tombstones(conn, token=token, before=before)
            if rows:
                await self.store.delete([Digest.parse(digest) for digest, _ in rows])
                await q.forget_tombstones(conn, [digest for digest, _ in rows])
                freed = sum(size for _, size in rows)
                await counters.add_counters(
                    conn, {"gc_blobs_deleted": len(rows), "gc_bytes_freed": freed}
                )
            return rows

        rows: list[tuple[str, int]] = []
        with anyio.CancelScope(shield=True):
            rows = await self.db.transact(delete)
        return rows

    @staticmethod
    def _deleted(done: Pass, rows: list[tuple[str, int]]) -> None:
        done.blobs_deleted += len(rows)
        done.bytes_freed += sum(size for _, size in rows)
        for digest, size in rows:
            log.debug("deleted blob %s (%d bytes)", digest, size)

    async def _record(self, done: Pass, started: datetime, seconds: float, worker: str) -> None:
        level = logging.INFO if done.busy else logging.DEBUG
        log.log(
            level,
            "garbage collection: deleted %d tags by retention, %d manifests, %d blobs (%d "
            "bytes), %d postponed by their lease, ended %d abandoned uploads, in %.2f s",
            done.tags_deleted,
            done.manifests_deleted,
            done.blobs_deleted,
            done.bytes_freed,
            done.postponed,
            done.uploads_ended,
            seconds,
        )
        totals = {"gc_runs": 1, "gc_errors": int(done.error is not None)}
        with contextlib.suppress(Exception):  # the database may be why the pass failed
            async with self.db.write() as conn:
                await counters.add_counters(conn, totals)
                if done.blobs_deleted or done.manifests_deleted or done.error:
                    await events.record(
                        conn,
                        "gc",
                        outcome="failure" if done.error else "success",
                        detail={
                            "worker": worker,
                            "seconds": round(seconds, 3),
                            "tags_deleted": done.tags_deleted,
                            "manifests_deleted": done.manifests_deleted,
                            "blobs_deleted": done.blobs_deleted,
                            "bytes_freed": done.bytes_freed,
                            "error": done.error,
                        },
                        by=context.system("gc"),
                    )
                if done.busy:
                    await q.record_run(
                        conn,
                        started_at=started,
                        seconds=seconds,
                        worker=worker,
                        blobs_deleted=done.blobs_deleted,
                        bytes_freed=done.bytes_freed,
                        manifests_deleted=done.manifests_deleted,
                        uploads_ended=done.uploads_ended,
                        postponed=done.postponed,
                        error=done.error,
                    )

    async def run(self) -> None:
        """Passes every `gc.interval_seconds` until cancelled (the app's lifespan). The
        upload sweep lists the upload area, so it runs at most every hour (or every
        quarter of the upload TTL, if that is shorter)."""
        worker = worker_name()
        sweep_every = min(3600.0, self.settings.upload_ttl_hours * 900)
        retention_every = self.settings.retention_interval_seconds
        while True:
            clock = time.monotonic()
            sweep = clock - self._last_upload_sweep >= sweep_every
            if sweep:
                self._last_upload_sweep = clock
            retention = bool(retention_every) and clock - self._last_retention >= retention_every
            if retention:
                self._last_retention = clock
            await self.collect(worker, sweep_uploads=sweep, retention=retention)
            await asyncio.sleep(self.settings.interval_seconds)
