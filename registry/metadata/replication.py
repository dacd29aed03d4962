"""Replication's rows: rules, runs, the items of a run (a work queue claimed under
leases) and the remote upload sessions of blobs being copied. Each query takes an open
connection and the caller owns the transaction.

Claims follow the webhook deliveries' pattern (metadata/webhooks.py): rows are picked
FOR UPDATE SKIP LOCKED on PostgreSQL (SQLite's writer lock orders claims there), and the
UPDATE that takes them checks again that they are free, so two processes never hold one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from registry.metadata.models import (
    Remote,
    ReplicationItem,
    ReplicationRule,
    ReplicationRun,
    ReplicationUpload,
    now,
    utc,
)
from registry.metadata.statements import dialect_insert, insert_new

ACTIVE = ("planning", "running")
DONE = ("copied", "skipped", "failed")


@dataclass(frozen=True, slots=True)
class RuleRow:
    id: int
    namespace: str
    name: str
    direction: str
    remote_id: int
    remote: str  # the remote's name
    repositories: list[str]
    tags: list[str]
    kinds: list[str]
    destination: str
    strip: int
    overwrite: bool
    deletions: bool
    trigger: str
    schedule: str | None
    next_run_at: datetime | None
    bandwidth: int
    blobs_at_once: int
    enabled: bool
    created_at: datetime
    created_by: str
    signed_only: bool


_RULE = (
    ReplicationRule.id,
    ReplicationRule.namespace,
    ReplicationRule.name,
    ReplicationRule.direction,
    ReplicationRule.remote_id,
    Remote.name,
    ReplicationRule.repositories,
    ReplicationRule.tags,
    ReplicationRule.kinds,
    ReplicationRule.destination,
    ReplicationRule.strip,
    ReplicationRule.overwrite,
    ReplicationRule.deletions,
    ReplicationRule.trigger,
    ReplicationRule.schedule,
    ReplicationRule.next_run_at,
    ReplicationRule.bandwidth,
    ReplicationRule.blobs_at_once,
    ReplicationRule.enabled,
    ReplicationRule.created_at,
    ReplicationRule.created_by,
    ReplicationRule.signed_only,
)
_JSON_FIELDS = ("repositories", "tags", "kinds")


def _rule(row: Sequence[Any]) -> RuleRow:
    values = list(row)
    for n in (6, 7, 8):
        values[n] = json.loads(values[n])
    for n in (15, 19):
        values[n] = utc(values[n]) if values[n] is not None else None
    return RuleRow(*values)


def _rules_query() -> Any:
    return select(*_RULE).join(Remote, Remote.id == ReplicationRule.remote_id)


async def insert_rule(conn: AsyncConnection, **values: Any) -> int | None:
    """The new rule's id, or None if its namespace has a rule of that name."""
    for key in _JSON_FIELDS:
        values[key] = json.dumps(values[key])
    return await insert_new(conn, ReplicationRule, **values, created_at=now())


async def rule(conn: AsyncConnection, namespace: str, name: str) -> RuleRow | None:
    query = _rules_query().where(
        ReplicationRule.namespace == namespace, ReplicationRule.name == name
    )
    row = (await conn.execute(query)).first()
    return _rule(row) if row else None


async def rule_by_id(conn: AsyncConnection, ident: int) -> RuleRow | None:
    row = (await conn.execute(_rules_query().where(ReplicationRule.id == ident))).first()
    return _rule(row) if row else None


async def rules(
    conn: AsyncConnection, namespace: str | None = None, trigger: str | None = None
) -> list[RuleRow]:
    """A namespace's rules ('' for the registry's), or all (None); enabled ones only
    when a trigger is named."""
    query = _rules_query().order_by(ReplicationRule.namespace, ReplicationRule.name)
    if namespace is not None:
        query = query.where(ReplicationRule.namespace == namespace)
    if trigger is not None:
        query = query.where(ReplicationRule.trigger == trigger, ReplicationRule.enabled)
    return [_rule(row) for row in await conn.execute(query)]


async def change_rule(conn: AsyncConnection, ident: int, **values: Any) -> None:
    for key in _JSON_FIELDS:
        if key in values:
            values[key] = json.dumps(values[key])
    await conn.execute(update(ReplicationRule).where(ReplicationRule.id == ident).values(**values))


async def remove_rule(conn: AsyncConnection, ident: int) -> None:
    await conn.execute(delete(ReplicationRule).where(ReplicationRule.id == ident))


async def remove_namespace_rules(conn: AsyncConnection, namespace: str) -> None:
    await conn.execute(delete(ReplicationRule).where(ReplicationRule.namespace == namespace))


async def rules_using(conn: AsyncConnection, remote_id: int) -> list[str]:
    query = select(ReplicationRule.name).where(ReplicationRule.remote_id == remote_id)
    return list((await conn.scalars(query.order_by(ReplicationRule.name))).all())


async def take_schedule(
    conn: AsyncConnection, ident: int, seen: datetime, following: datetime
) -> bool:
    """Move a rule's next scheduled run from `seen` to `following`: true for the one
    process that does (the others saw it moved), which then starts the run."""
    result = await conn.execute(
        update(ReplicationRule)
        .where(ReplicationRule.id == ident, ReplicationRule.next_run_at == seen)
        .values(next_run_at=following)
    )
    return bool(result.rowcount)


# Runs


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    rule_id: int
    trigger: str
    state: str
    created_at: datetime
    created_by: str
    finished_at: datetime | None
    error: str | None
    # Items by state, and bytes moved.
    counts: dict[str, int]
    bytes: int


_RUN = (
    ReplicationRun.id,
    ReplicationRun.rule_id,
    ReplicationRun.trigger,
    ReplicationRun.state,
    ReplicationRun.created_at,
    ReplicationRun.created_by,
    ReplicationRun.finished_at,
    ReplicationRun.error,
)


async def insert_run(conn: AsyncConnection, rule_id: int, trigger: str, state: str, by: str) -> int:
    result = await conn.execute(
        dialect_insert(conn, ReplicationRun)
        .values(rule_id=rule_id, trigger=trigger, state=state, created_at=now(), created_by=by)
        .returning(ReplicationRun.id)
    )
    return int(result.scalar_one())


async def active_run(conn: AsyncConnection, rule_id: int, *, lock: bool = False) -> int | None:
    """The rule's run that is planning or running, if any; with `lock`, its row locked
    (PostgreSQL), so that the run cannot end while items are added to it."""
    query = select(ReplicationRun.id).where(
        ReplicationRun.rule_id == rule_id, ReplicationRun.state.in_(ACTIVE)
    )
    if lock:
        query = query.with_for_update()
    return await conn.scalar(query.order_by(ReplicationRun.id).limit(1))


async def runs(
    conn: AsyncConnection, rule_ids: Sequence[int], before: int | None, limit: int
) -> list[RunRow]:
    """Runs of these rules, newest first, with their items counted."""
    query = select(*_RUN).where(ReplicationRun.rule_id.in_(list(rule_ids)))
    if before is not None:
        query = query.where(ReplicationRun.id < before)
    found = list(await conn.execute(query.order_by(ReplicationRun.id.desc()).limit(limit)))
    return await _counted(conn, found)


async def run(conn: AsyncConnection, ident: int) -> RunRow | None:
    found = list(await conn.execute(select(*_RUN).where(ReplicationRun.id == ident)))
    counted = await _counted(conn, found)
    return counted[0] if counted else None


async def _counted(conn: AsyncConnection, found: list[Any]) -> list[RunRow]:
    ids = [row[0] for row in found]
    counts: dict[int, dict[str, int]] = {ident: {} for ident in ids}
    moved: dict[int, int] = dict.fromkeys(ids, 0)
    if ids:
        rows = await conn.execute(
            select(
                ReplicationItem.run_id,
                ReplicationItem.state,
                func.count(),
                func.coalesce(func.sum(ReplicationItem.bytes), 0),
            )
            .where(ReplicationItem.run_id.in_(ids))
            .group_by(ReplicationItem.run_id, ReplicationItem.state)
        )
        for run_id, state, count, size in rows:
            counts[run_id][state] = int(count)
            moved[run_id] += int(size)
    return [
        RunRow(
            int(row[0]),
            int(row[1]),
            row[2],
            row[3],
            utc(row[4]),
            row[5],
            utc(row[6]) if row[6] else None,
            row[7],
            counts[row[0]],
            moved[row[0]],
        )
        for row in found
    ]


async def claim_planning(
    conn: AsyncConnection, moment: datetime, until: datetime, worker: str
) -> tuple[int, int] | None:
    """Lease one run that waits to be planned (its items listed): (run, rule)."""
    free = or_(ReplicationRun.lease_until.is_(None), ReplicationRun.lease_until <= moment)
    found = (
        await conn.execute(
            select(ReplicationRun.id)
            .where(ReplicationRun.state == "planning", free)
            .order_by(ReplicationRun.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).first()
    if found is None:
        return None
    taken = await conn.execute(
        update(ReplicationRun)
        .where(ReplicationRun.id == found[0], ReplicationRun.state == "planning", free)
        .values(lease_until=until, worker=worker)
        .returning(ReplicationRun.id, ReplicationRun.rule_id)
    )
    row = taken.first()
    return (int(row[0]), int(row[1])) if row else None


async def planned(conn: AsyncConnection, run_id: int, worker: str, error: str | None) -> bool:
    """A run's items are queued (or its planning failed, with `error`): it runs, or has
    failed. False if the lease was lost to another process meanwhile."""
    values: dict[str, Any] = {"state": "running", "lease_until": None, "worker": None}
    if error is not None:
        values.update(state="failed", error=error, finished_at=now())
    result = await conn.execute(
        update(ReplicationRun)
        .where(
            ReplicationRun.id == run_id,
            ReplicationRun.state == "planning",
            ReplicationRun.worker == worker,
        )
        .values(**values)
    )
    return bool(result.rowcount)


async def finish_runs(conn: AsyncConnection, run_ids: Sequence[int]) -> list[int]:
    """End those of these runs whose every item is done: failed if one failed, else
    succeeded. Returns the runs ended."""
    ended = []
    for run_id in sorted(set(run_ids)):
        # The run's row first (PostgreSQL: locked), so that no item is added to it
        # between this count and the end (enqueue locks it too).
        state = await conn.scalar(
            select(ReplicationRun.state).where(ReplicationRun.id == run_id).with_for_update()
        )
        if state != "running":
            continue
        rows = await conn.execute(
            select(ReplicationItem.state, func.count())
            .where(ReplicationItem.run_id == run_id)
            .group_by(ReplicationItem.state)
        )
        counts = {state: count for state, count in rows}
        if any(s not in DONE for s in counts):
            continue
        await conn.execute(
            update(ReplicationRun)
            .where(ReplicationRun.id == run_id)
            .values(state="failed" if counts.get("failed") else "succeeded", finished_at=now())
        )
        ended.append(run_id)
    return ended


# Items


@dataclass(frozen=True, slots=True)
class ItemRow:
    id: int
    run_id: int
    rule_id: int
    action: str
    repository: str
    reference: str
    destination: str
    state: str
    attempts: int
    digest: str | None
    bytes: int
    error: str | None
    event_at: datetime | None
    created_at: datetime
    finished_at: datetime | None


_ITEM = (
    ReplicationItem.id,
    ReplicationItem.run_id,
    ReplicationItem.rule_id,
    ReplicationItem.action,
    ReplicationItem.repository,
    ReplicationItem.reference,
    ReplicationItem.destination,
    ReplicationItem.state,
    ReplicationItem.attempts,
    ReplicationItem.digest,
    ReplicationItem.bytes,
    ReplicationItem.error,
    ReplicationItem.event_at,
    ReplicationItem.created_at,
    ReplicationItem.finished_at,
)


def _item(row: Sequence[Any]) -> ItemRow:
    values = list(row)
    for n in (12, 13, 14):
        values[n] = utc(values[n]) if values[n] is not None else None
    return ItemRow(*values)


@dataclass(frozen=True, slots=True)
class NewItem:
    action: str  # copy or delete
    repository: str
    reference: str
    destination: str
    event_at: datetime | None = None


async def enqueue(
    conn: AsyncConnection, run_id: int, rule_id: int, items: Sequence[NewItem]
) -> int:
    """Add items to a run; one the rule has pending already (the same repository,
    reference and action) is not added again: that one will copy it as it is then.
    Returns how many were added."""
    if not items:
        return 0
    moment = now()
    rows = [
        {
            "run_id": run_id,
            "rule_id": rule_id,
            "action": item.action,
            "repository": item.repository,
            "reference": item.reference,
            "destination": item.destination,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": moment,
            "bytes": 0,
            "event_at": item.event_at,
            "created_at": moment,
        }
        for item in items
    ]
    result = await conn.execute(
        dialect_insert(conn, ReplicationItem)
        .on_conflict_do_nothing(
            index_elements=["rule_id", "repository", "reference", "action"],
            index_where=text("state = 'pending'"),
        )
        .returning(ReplicationItem.id),
        rows,
    )
    return len(result.all())


async def claim_items(
    conn: AsyncConnection, moment: datetime, until: datetime, worker: str, limit: int
) -> list[ItemRow]:
    """Lease up to `limit` due items. An item waits while another of its rule,
    repository and reference runs under a live lease, so that two copies of one tag
    never race and the older end last."""
    other = aliased(ReplicationItem)
    free = or_(ReplicationItem.lease_until.is_(None), ReplicationItem.lease_until <= moment)
    busy = (
        select(other.id)
        .where(
            other.rule_id == ReplicationItem.rule_id,
            other.repository == ReplicationItem.repository,
            other.reference == ReplicationItem.reference,
            other.id != ReplicationItem.id,
            other.state == "running",
            other.lease_until > moment,
        )
        .exists()
    )
    due = or_(
        and_(ReplicationItem.state == "pending", ReplicationItem.next_attempt_at <= moment),
        # Running under a lease that ran out: its process died; another goes on.
        and_(ReplicationItem.state == "running", ReplicationItem.lease_until <= moment),
    )
    picked = await conn.execute(
        select(ReplicationItem.id)
        .where(due, ~busy)
        .order_by(ReplicationItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=ReplicationItem)
    )
    ids = [row[0] for row in picked]
    if not ids:
        return []
    taken = await conn.execute(
        update(ReplicationItem)
        .where(ReplicationItem.id.in_(ids), ReplicationItem.state.in_(("pending", "running")))
        .where(free)
        .values(state="running", lease_until=until, worker=worker)
        .returning(*_ITEM)
    )
    return [_item(row) for row in taken]


async def renew_items(
    conn: AsyncConnection, ids: Sequence[int], worker: str, until: datetime
) -> set[int]:
    """Extend this worker's leases; the ids it still holds."""
    if not ids:
        return set()
    result = await conn.execute(
        update(ReplicationItem)
        .where(
            ReplicationItem.id.in_(list(ids)),
            ReplicationItem.worker == worker,
            ReplicationItem.state == "running",
        )
        .values(lease_until=until)
        .returning(ReplicationItem.id)
    )
    return {int(row[0]) for row in result}


async def settle_item(
    conn: AsyncConnection,
    item_id: int,
    worker: str,
    state: str,
    *,
    digest: str | None,
    size: int,
    error: str | None,
    retry_at: datetime | None = None,
) -> bool:
    """Record an attempt: `state` is final (copied, skipped, failed), or pending again
    until `retry_at`. False if this worker no longer held the item."""
    values: dict[str, Any] = {
        "state": state,
        "lease_until": None,
        "worker": None,
        "digest": digest,
        "bytes": ReplicationItem.bytes + size,
        "error": error,
        "attempts": ReplicationItem.attempts + 1,
    }
    if state == "pending":
        values["next_attempt_at"] = retry_at
    else:
        values["finished_at"] = now()
    result = await conn.execute(
        update(ReplicationItem)
        .where(
            ReplicationItem.id == item_id,
            ReplicationItem.worker == worker,
            ReplicationItem.state == "running",
        )
        .values(**values)
    )
    if state != "pending":
        await conn.execute(delete(ReplicationUpload).where(ReplicationUpload.item_id == item_id))
    return bool(result.rowcount)


async def items(
    conn: AsyncConnection, run_id: int, state: str | None, before: int | None, limit: int
) -> list[ItemRow]:
    query = select(*_ITEM).where(ReplicationItem.run_id == run_id)
    if state is not None:
        query = query.where(ReplicationItem.state == state)
    if before is not None:
        query = query.where(ReplicationItem.id < before)
    rows = await conn.execute(query.order_by(ReplicationItem.id.desc()).limit(limit))
    return [_item(row) for row in rows]


async def failed_items(conn: AsyncConnection, run_id: int) -> list[NewItem]:
    rows = await conn.execute(
        select(
            ReplicationItem.action,
            ReplicationItem.repository,
            ReplicationItem.reference,
            ReplicationItem.destination,
        ).where(ReplicationItem.run_id == run_id, ReplicationItem.state == "failed")
    )
    return [NewItem(*row) for row in rows]


async def work(conn: AsyncConnection, moment: datetime) -> tuple[bool, bool, datetime | None]:
    """(a run waits to be planned, an item is due, the next schedule's time): what an
    idle worker reads before taking a write turn."""
    planning = await conn.scalar(
        select(ReplicationRun.id).where(ReplicationRun.state == "planning").limit(1)
    )
    due = await conn.scalar(
        select(ReplicationItem.id)
        .where(
            or_(
                and_(
                    ReplicationItem.state == "pending",
                    ReplicationItem.next_attempt_at <= moment,
                ),
                and_(ReplicationItem.state == "running", ReplicationItem.lease_until <= moment),
            )
        )
        .limit(1)
    )
    scheduled = await conn.scalar(
        select(func.min(ReplicationRule.next_run_at)).where(
            ReplicationRule.trigger == "schedule", ReplicationRule.enabled
        )
    )
    return planning is not None, due is not None, utc(scheduled) if scheduled else None


async def unfinished(conn: AsyncConnection) -> bool:
    """Whether a run is planning or running."""
    found = await conn.scalar(
        select(ReplicationRun.id).where(ReplicationRun.state.in_(ACTIVE)).limit(1)
    )
    return found is not None


# Uploads in progress at a remote


async def upload_at(conn: AsyncConnection, item_id: int, digest: str) -> str | None:
    return await conn.scalar(
        select(ReplicationUpload.location).where(
            ReplicationUpload.item_id == item_id, ReplicationUpload.digest == digest
        )
    )


async def keep_upload(conn: AsyncConnection, item_id: int, digest: str, location: str) -> None:
    statement = dialect_insert(conn, ReplicationUpload).values(
        item_id=item_id, digest=digest, location=location, updated_at=now()
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["item_id", "digest"],
            set_={"location": location, "updated_at": now()},
        )
    )


async def forget_upload(conn: AsyncConnection, item_id: int, digest: str) -> None:
    await conn.execute(
        delete(ReplicationUpload).where(
            ReplicationUpload.item_id == item_id, ReplicationUpload.digest == digest
        )
    )
