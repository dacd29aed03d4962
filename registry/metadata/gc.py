"""Queries of garbage collection. Each takes an open connection and the
caller owns the transaction.

Locks on PostgreSQL (READ COMMITTED): the collector locks the blob rows it looks at
(FOR UPDATE SKIP LOCKED, so replicas take disjoint batches and never wait on a push);
everything that makes a blob live again takes the same row first: a lease renewal is an
UPDATE of it, a manifest push reads its blobs FOR SHARE. Each then re-reads the other's
committed work in its next statement. On SQLite every write transaction holds the one
writer lock, which orders them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from registry import context
from registry.metadata import events, manifests
from registry.metadata.blobs import lock_namespace_counts
from registry.metadata.models import (
    Blob,
    BlobTombstone,
    GcHold,
    GcRun,
    Manifest,
    ManifestReference,
    Repository,
    RepositoryBlob,
    Tag,
    utc,
)

# Whether anything references a blob (in a query over Blob rows).
REFERENCED = select(ManifestReference.digest).where(ManifestReference.digest == Blob.digest)
# Manifests are blobs too: one stored as this blob in any repository keeps it.
STORED = select(Manifest.id).where(Manifest.digest == Blob.digest)


def collectable_now(now: datetime) -> list[ColumnElement[bool]]:
    """Conditions on a Blob row a pass would delete at `now`: due, no lease holds it,
    nothing references it. The collector re-checks them on the rows it has locked."""
    return [
        Blob.gc_after <= now,
        or_(Blob.leased_until.is_(None), Blob.leased_until <= now),
        ~REFERENCED.exists(),
        ~STORED.exists(),
    ]


@dataclass(frozen=True, slots=True)
class Due:
    """A blob garbage collection should look at now, as its locked row says."""

    digest: str
    size: int
    leased: bool  # a lease still holds it


async def collectable(conn: AsyncConnection, now: datetime, limit: int) -> list[tuple[str, int]]:
    """(digest, size) of queued blobs that nothing references and no lease holds, the
    longest queued first. One range of the gc_after index, however many blobs are live."""
    rows = await conn.execute(
        select(Blob.digest, Blob.size)
        .where(*collectable_now(now))
        .order_by(Blob.gc_after)
        .limit(limit)
    )
    return [(digest, int(size)) for digest, size in rows]


async def queued(conn: AsyncConnection) -> int:
    """Blobs waiting for garbage collection to look at them, due or not."""
    return int(await conn.scalar(select(func.count()).where(Blob.gc_after.is_not(None))) or 0)


async def lock_due(
    conn: AsyncConnection, now: datetime, limit: int, leases_at: datetime | None = None
) -> list[Due]:
    """Lock up to `limit` blobs due for a look, skipping rows another transaction holds
    (a push using them, another replica's pass): those are looked at next time. A lease
    counts as holding if it lasts past `leases_at` (default `now`)."""
    rows = await conn.execute(
        select(Blob.digest, Blob.size, Blob.leased_until > (leases_at or now))
        .where(Blob.gc_after <= now)
        .order_by(Blob.gc_after)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [Due(digest, int(size), bool(leased)) for digest, size, leased in rows]


async def referenced(conn: AsyncConnection, digests: Sequence[str]) -> set[str]:
    """Which of `digests` a manifest references, or is stored as, in any repository."""
    if not digests:
        return set()
    found = set(
        await conn.scalars(
            select(ManifestReference.digest).where(ManifestReference.digest.in_(digests))
        )
    )
    found.update(await conn.scalars(select(Manifest.digest).where(Manifest.digest.in_(digests))))
    return found


async def requeue(conn: AsyncConnection, digests: Sequence[str], when: datetime | None) -> None:
    """Look at these blobs again at `when` (None: not until a reference goes)."""
    if digests:
        await conn.execute(update(Blob).where(Blob.digest.in_(digests)).values(gc_after=when))


async def requeue_at_lease_end(conn: AsyncConnection, digests: Sequence[str]) -> None:
    if digests:
        await conn.execute(
            update(Blob).where(Blob.digest.in_(digests)).values(gc_after=Blob.leased_until)
        )


async def bury(conn: AsyncConnection, garbage: Sequence[Due], token: str, now: datetime) -> None:
    """Remove the rows of blobs to delete, and leave their tombstones."""
    digests = [blob.digest for blob in garbage]
    await lock_namespace_counts(conn, digests)
    await conn.execute(delete(RepositoryBlob).where(RepositoryBlob.digest.in_(digests)))
    await conn.execute(delete(Blob).where(Blob.digest.in_(digests)))
    await conn.execute(
        insert(BlobTombstone),
        [{"digest": b.digest, "size": b.size, "token": token, "created_at": now} for b in garbage],
    )


async def lock_tombstones(
    conn: AsyncConnection, *, token: str | None = None, before: datetime | None = None
) -> list[tuple[str, int]]:
    """Lock the tombstones of one pass (`token`), or those left since `before` by a pass
    that did not finish, skipping any a running pass holds. (digest, size) each."""
    query = select(BlobTombstone.digest, BlobTombstone.size).with_for_update(skip_locked=True)
    if token is not None:
        query = query.where(BlobTombstone.token == token)
    if before is not None:
        query = query.where(BlobTombstone.created_at < before)
    return [(digest, int(size)) for digest, size in await conn.execute(query)]


async def forget_tombstones(conn: AsyncConnection, digests: Sequence[str]) -> None:
    if digests:
        await conn.execute(delete(BlobTombstone).where(BlobTombstone.digest.in_(digests)))


async def tombstoned(conn: AsyncConnection, digest: str) -> bool:
    found = await conn.scalar(select(BlobTombstone.digest).where(BlobTombstone.digest == digest))
    return found is not None


async def renew_lease(conn: AsyncConnection, digest: str, until: datetime) -> None:
    """Extend the blob's lease to `until`; on PostgreSQL this waits for a collection pass
    holding the row, after which the row is either gone (with a tombstone) or kept."""
    await conn.execute(
        update(Blob)
        .where(Blob.digest == digest, or_(Blob.leased_until.is_(None), Blob.leased_until < until))
        .values(leased_until=until)
    )


# Candidate manifests


@dataclass(frozen=True, slots=True)
class Candidate:
    id: int
    repository_id: int
    digest: str


async def lock_untagged(conn: AsyncConnection, cutoff: datetime, limit: int) -> list[Candidate]:
    """Lock up to `limit` manifests untagged since before `cutoff` (one range of the
    untagged_at index), skipping those a push holds."""
    rows = await conn.execute(
        select(Manifest.id, Manifest.repository_id, Manifest.digest)
        .where(Manifest.untagged_at < cutoff)
        .order_by(Manifest.untagged_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [Candidate(int(i), int(r), d) for i, r, d in rows]


async def needed(
    conn: AsyncConnection, candidates: Sequence[Candidate], tagged: set[int] | None = None
) -> tuple[set[int], set[int]]:
    """Of the candidates, (tagged, kept): those a tag points at after all, and those that
    stay because a manifest that stays needs them: an index lists them (in any
    repository), or they are the subject of a referrer in theirs (signatures and SBOMs
    stay with their image). A manifest that goes needs nothing, so the two rules are
    applied until nothing changes. `tagged`, if given, says which candidates keep a tag
    (retention knows: it is deleting theirs)."""
    ids = [c.id for c in candidates]
    digests = sorted({c.digest for c in candidates})
    if tagged is None:
        found = await conn.scalars(select(Tag.manifest_id).where(Tag.manifest_id.in_(ids)))
        tagged = set(found)
    # (manifest that needs, candidates it needs)
    needs: list[tuple[int, list[int]]] = []
    listed = await conn.execute(
        select(ManifestReference.manifest_id, ManifestReference.digest).where(
            ManifestReference.digest.in_(digests), ManifestReference.kind == "manifest"
        )
    )
    for source, digest in listed:
        needs.append((int(source), [c.id for c in candidates if c.digest == digest]))
    subjects = await conn.execute(
        select(Manifest.id, Manifest.repository_id, Manifest.subject).where(
            Manifest.subject.in_(digests)
        )
    )
    for source, repository_id, subject in subjects:
        targets = [
            c.id for c in candidates if (c.repository_id, c.digest) == (repository_id, subject)
        ]
        needs.append((int(source), targets))
    kept = set(tagged)
    changed = True
    while changed:
        changed = False
        for source, targets in needs:
            if source in ids and source not in kept:
                continue  # going, unless something keeps it
            for target in targets:
                if target not in kept:
                    kept.add(target)
                    changed = True
    return tagged, kept - tagged


async def delete_candidates(
    conn: AsyncConnection, doomed: Sequence[Candidate], reason: str, by: context.Context
) -> int:
    """Delete these manifests (with their tags and references), each with a `delete`
    event that gives the reason; returns how many went."""
    if not doomed:
        return 0
    names = await repository_names(conn, {m.repository_id for m in doomed})
    which = Manifest.id.in_([m.id for m in doomed])
    deleted = (await manifests.delete_manifests(conn, which)).manifests
    rows = [
        events.event(
            "delete",
            repository=names[m.repository_id],
            target={"digest": m.digest},
            detail={"reason": reason},
            by=by,
        )
        for m in doomed
        if m.repository_id in names
    ]
    await events.record_all(conn, rows)
    return deleted


async def repository_names(conn: AsyncConnection, ids: set[int]) -> dict[int, str]:
    rows = await conn.execute(select(Repository.id, Repository.name).where(Repository.id.in_(ids)))
    return {int(ident): name for ident, name in rows}


async def requeue_untagged(
    conn: AsyncConnection, ids: Sequence[int], when: datetime | None
) -> None:
    if ids:
        await conn.execute(update(Manifest).where(Manifest.id.in_(ids)).values(untagged_at=when))


async def record_run(conn: AsyncConnection, **values: object) -> None:
    await conn.execute(insert(GcRun).values(**values))


async def recent_runs(conn: AsyncConnection, limit: int) -> list[dict[str, object]]:
    """The last runs that did something, newest first, as JSON-ready dicts."""
    rows = await conn.execute(select(GcRun).order_by(GcRun.id.desc()).limit(limit))
    runs = []
    for row in rows.mappings():
        run = {key: value for key, value in row.items() if key != "id"}
        started = run["started_at"]
        assert isinstance(started, datetime)
        run["started_at"] = utc(started).isoformat()
        runs.append(run)
    return runs


# What storage waits for: `registry gc --dry-run`, GET /api/v1/gc and the status page.


@dataclass(frozen=True, slots=True)
class Waiting:
    """Bytes stored that nothing needs, by what they wait for: a pass (due now), a lease
    (unreferenced, but a push touched them lately), or untagged manifests that hold them
    (gone only when deleted, or after gc.untagged_hours)."""

    due_blobs: int
    due_bytes: int
    leased_blobs: int
    leased_bytes: int
    leased_until: datetime | None  # when the last lease ends
    untagged_manifests: int
    untagged_bytes: int  # what deleting them all would free
    untagged_since: datetime | None  # the oldest's untagged_at


async def waiting(conn: AsyncConnection, now: datetime) -> Waiting:
    due_blobs, due_bytes = (
        await conn.execute(
            select(func.count(), func.coalesce(func.sum(Blob.size), 0)).where(*collectable_now(now))
        )
    ).one()
    leased = (
        await conn.execute(
            select(
                func.count(), func.coalesce(func.sum(Blob.size), 0), func.max(Blob.leased_until)
            ).where(
                Blob.gc_after.is_not(None),  # queued: every blob nothing references is
                Blob.leased_until > now,
                ~REFERENCED.exists(),
                ~STORED.exists(),
            )
        )
    ).one()
    # The untagged manifests that would go if gc.untagged_hours said so now: those
    # neither a tagged manifest lists (an index its platforms) nor refer to a tagged
    # manifest of their repository (signatures). One level: an index of indexes is rare.
    parent, subject = aliased(Manifest), aliased(Manifest)
    free = (
        select(Manifest.id, Manifest.digest, Manifest.untagged_at)
        .where(
            Manifest.untagged_at.is_not(None),
            ~select(ManifestReference.manifest_id)
            .join(parent, parent.id == ManifestReference.manifest_id)
            .where(
                ManifestReference.digest == Manifest.digest,
                ManifestReference.kind == "manifest",
                parent.untagged_at.is_(None),
            )
            .exists(),
            ~select(subject.id)
            .where(
                subject.repository_id == Manifest.repository_id,
                subject.digest == Manifest.subject,
                subject.untagged_at.is_(None),
            )
            .exists(),
        )
        .cte("free")
    )
    untagged, since = (await conn.execute(select(func.count(), func.min(free.c.untagged_at)))).one()
    others = ~Manifest.id.in_(select(free.c.id))
    held = select(func.coalesce(func.sum(Blob.size), 0)).where(
        or_(
            Blob.digest.in_(
                select(ManifestReference.digest).where(
                    ManifestReference.manifest_id.in_(select(free.c.id))
                )
            ),
            Blob.digest.in_(select(free.c.digest)),
        ),
        ~select(ManifestReference.digest)
        .join(Manifest, Manifest.id == ManifestReference.manifest_id)
        .where(ManifestReference.digest == Blob.digest, others)
        .exists(),
        ~select(Manifest.id).where(Manifest.digest == Blob.digest, others).exists(),
    )
    return Waiting(
        due_blobs=int(due_blobs),
        due_bytes=int(due_bytes),
        leased_blobs=int(leased[0]),
        leased_bytes=int(leased[1]),
        leased_until=utc(leased[2]) if leased[2] is not None else None,
        untagged_manifests=int(untagged),
        untagged_bytes=int(await conn.scalar(held) or 0),
        untagged_since=utc(since) if since is not None else None,
    )


async def due_count(conn: AsyncConnection, now: datetime) -> int:
    return int(await conn.scalar(select(func.count()).where(Blob.gc_after <= now)) or 0)


async def tombstone_count(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).select_from(BlobTombstone)) or 0)


# The hold (migration 0016). A pass reads the row FOR SHARE in the transaction that
# decides its batch; a hold is an UPDATE of it, so it waits for deciding passes to commit,
# and every pass that decides after it sees it. On SQLite the writer lock orders them.


async def held_until(conn: AsyncConnection, now: datetime, lock: bool = True) -> datetime | None:
    """Until when deletions are held, if they are at `now`; `lock` for a pass deciding."""
    query = select(GcHold.until).where(GcHold.id == 1)
    until = await conn.scalar(query.with_for_update(read=True) if lock else query)
    return utc(until) if until is not None and utc(until) > now else None


async def hold(conn: AsyncConnection, until: datetime | None, holder: str) -> None:
    """Hold deletions until `until` (None: release the hold)."""
    await conn.execute(update(GcHold).where(GcHold.id == 1).values(until=until, holder=holder))
