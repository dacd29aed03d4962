"""Queries of webhooks: endpoints, their deliveries and the delivery log (migration
0014). Each takes an open connection and the caller owns the
transaction.

A delivery is sent only when it is its endpoint's oldest pending one, and only by the
process whose lease it holds: `claim` leases heads in one UPDATE per row that re-checks
the lease (and, on PostgreSQL, locks with SKIP LOCKED), so two processes never hold the
same delivery, and an endpoint's next delivery waits while its head is pending.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from registry.metadata.models import Event, Webhook, WebhookAttempt, WebhookDelivery, utc

# The states /metrics counts (delivered ones are many, and counted as attempts).
BACKLOG_STATES = ("pending", "failed")


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int
    namespace: str | None
    url: str
    events: tuple[str, ...]
    repositories: str | None
    tags: str | None
    secret: str
    format: str
    enabled: bool
    created_at: datetime
    created_by: str


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        id=int(row.id),
        namespace=row.namespace,
        url=row.url,
        events=tuple(json.loads(row.events)),
        repositories=row.repositories,
        tags=row.tags,
        secret=row.secret,
        format=row.format,
        enabled=bool(row.enabled),
        created_at=utc(row.created_at),
        created_by=row.created_by,
    )


async def add(conn: AsyncConnection, **values: Any) -> int:
    values["events"] = json.dumps(sorted(values["events"]))
    result = await conn.execute(insert(Webhook).values(**values).returning(Webhook.id))
    return int(result.scalar_one())


async def change(conn: AsyncConnection, ident: int, **values: Any) -> None:
    if "events" in values:
        values["events"] = json.dumps(sorted(values["events"]))
    await conn.execute(update(Webhook).where(Webhook.id == ident).values(**values))


async def remove(conn: AsyncConnection, ident: int) -> bool:
    return bool((await conn.execute(delete(Webhook).where(Webhook.id == ident))).rowcount)


async def endpoint(conn: AsyncConnection, ident: int) -> Endpoint | None:
    row = (await conn.execute(select(Webhook).where(Webhook.id == ident))).first()
    return None if row is None else _endpoint(row)


async def endpoints(
    conn: AsyncConnection, *, namespaces: Sequence[str] | None = None, enabled: bool = False
) -> list[Endpoint]:
    """Endpoints by id; of these namespaces only (None: all, global ones included)."""
    query = select(Webhook).order_by(Webhook.id)
    if namespaces is not None:
        query = query.where(Webhook.namespace.in_(list(namespaces)))
    if enabled:
        query = query.where(Webhook.enabled.is_(True))
    return [_endpoint(row) for row in await conn.execute(query)]


async def pull_wanted(conn: AsyncConnection) -> bool:
    """Whether an enabled endpoint wants pull events."""
    found = await conn.scalar(
        select(Webhook.id)
        .where(Webhook.enabled.is_(True), Webhook.events.contains('"pull"'))
        .limit(1)
    )
    return found is not None


async def enqueue(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(WebhookDelivery), list(rows))


async def work(conn: AsyncConnection, moment: datetime) -> tuple[bool, bool]:
    """(any event waits to be dispatched, any delivery is due): two index probes, in
    one statement (the worker asks several times a second)."""
    undispatched = select(Event.id).where(Event.dispatched.is_(False)).exists()
    due = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= moment)
        .exists()
    )
    row = (await conn.execute(select(undispatched, due))).one()
    return bool(row[0]), bool(row[1])


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    webhook_id: int
    body: str
    attempts: int
    created_at: datetime


async def claim(
    conn: AsyncConnection,
    moment: datetime,
    until: datetime,
    worker: str,
    endpoints: int,
    each: int,
) -> list[Claimed]:
    """Lease to `worker`, until `until`, for up to `endpoints` endpoints whose oldest
    pending delivery is due and free, that delivery and up to `each - 1` pending ones
    after it (never tried, so due), in id order: one worker sends an endpoint's
    deliveries in order while the others skip it."""
    older = aliased(WebhookDelivery)
    head = ~(
        select(older.id)
        .where(
            older.webhook_id == WebhookDelivery.webhook_id,
            older.state == "pending",
            older.id < WebhookDelivery.id,
        )
        .exists()
    )
    free = or_(WebhookDelivery.leased_until.is_(None), WebhookDelivery.leased_until <= moment)
    heads = await conn.execute(
        select(WebhookDelivery.id, WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.state == "pending",
            WebhookDelivery.next_attempt_at <= moment,
            free,
            head,
        )
        .order_by(WebhookDelivery.id)
        .limit(endpoints)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    claimed = []
    for head_id, webhook_id in list(heads):
        batch = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.webhook_id == webhook_id,
                WebhookDelivery.state == "pending",
                WebhookDelivery.id >= head_id,
            )
            .order_by(WebhookDelivery.id)
            .limit(each)
        )
        # The UPDATE re-checks the lease: on SQLite the writer lock orders claims, on
        # PostgreSQL the row locks; a lease taken meanwhile leaves a row out.
        taken = await conn.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id.in_(batch.scalar_subquery()),
                WebhookDelivery.state == "pending",
                free,
            )
            .values(leased_until=until, leased_by=worker)
            .returning(
                WebhookDelivery.id,
                WebhookDelivery.webhook_id,
                WebhookDelivery.body,
                WebhookDelivery.attempts,
                WebhookDelivery.created_at,
            )
        )
        rows = sorted(taken, key=lambda row: int(row[0]))
        claimed += [Claimed(int(i), int(w), b, int(a), utc(c)) for i, w, b, a, c in rows]
    return claimed


@dataclass(frozen=True, slots=True)
class Settled:
    """An attempt of a claimed delivery, and what the delivery becomes: delivered,
    failed, or pending again at `next_attempt_at`."""

    claimed: Claimed
    attempt: dict[str, Any]
    state: str
    next_attempt_at: datetime


async def settle(
    conn: AsyncConnection, worker: str, done: Sequence[Settled], unsent: Sequence[int]
) -> None:
    """Log the attempts and settle their deliveries; let go of the leases of those not
    sent (after an endpoint's failure, its later ones wait for the next claim)."""
    if done:
        await conn.execute(
            insert(WebhookAttempt),
            [
                {
                    "delivery_id": d.claimed.id,
                    "webhook_id": d.claimed.webhook_id,
                    "worker": worker,
                    **d.attempt,
                }
                for d in done
            ],
        )
    delivered = [d.claimed.id for d in done if d.state == "delivered"]
    if delivered:  # the common case, in one statement
        await conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(delivered), WebhookDelivery.leased_by == worker)
            .values(
                state="delivered",
                attempts=WebhookDelivery.attempts + 1,
                finished_at=max(d.attempt["at"] for d in done),
                leased_until=None,
                leased_by=None,
            )
        )
    for d in done:
        if d.state == "delivered":
            continue
        values: dict[str, Any] = {
            "state": d.state,
            "attempts": WebhookDelivery.attempts + 1,
            "next_attempt_at": d.next_attempt_at,
            "leased_until": None,
            "leased_by": None,
        }
        if d.state == "failed":
            values["finished_at"] = d.attempt["at"]
        await conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == d.claimed.id, WebhookDelivery.leased_by == worker)
            .values(**values)
        )
    if unsent:
        await conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(list(unsent)), WebhookDelivery.leased_by == worker)
            .values(leased_until=None, leased_by=None)
        )


async def deliveries(
    conn: AsyncConnection,
    webhook_id: int,
    *,
    state: str | None,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """An endpoint's deliveries, newest first, each with its last attempt."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if state is not None:
        query = query.where(WebhookDelivery.state == state)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    rows = list(
        (await conn.execute(query.order_by(WebhookDelivery.id.desc()).limit(limit))).mappings()
    )
    last: dict[int, dict[str, Any]] = {}
    if rows:
        newest = (
            select(func.max(WebhookAttempt.id))
            .where(WebhookAttempt.delivery_id.in_([r["id"] for r in rows]))
            .group_by(WebhookAttempt.delivery_id)
        )
        attempts = await conn.execute(select(WebhookAttempt).where(WebhookAttempt.id.in_(newest)))
        last = {a["delivery_id"]: _aware(a) for a in attempts.mappings()}
    return [{**_aware(row), "last_attempt": last.get(row["id"])} for row in rows]


async def attempts(
    conn: AsyncConnection, webhook_id: int, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """An endpoint's delivery log, newest first."""
    query = select(WebhookAttempt, WebhookDelivery.event_uid, WebhookDelivery.action).join(
        WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id
    )
    query = query.where(WebhookAttempt.webhook_id == webhook_id)
    if before is not None:
        query = query.where(WebhookAttempt.id < before)
    rows = await conn.execute(query.order_by(WebhookAttempt.id.desc()).limit(limit))
    return [_aware(row) for row in rows.mappings()]


def _aware(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row with its times in UTC (SQLite gives them back without a zone)."""
    return {key: utc(v) if isinstance(v, datetime) else v for key, v in row.items()}


async def redeliver(
    conn: AsyncConnection, webhook_id: int, moment: datetime, delivery_id: int | None
) -> int:
    """Queue again, as new deliveries at the end of the endpoint's queue, one delivery
    (any state) or every failed one; returns how many."""
    query = select(WebhookDelivery.event_uid, WebhookDelivery.action, WebhookDelivery.body).where(
        WebhookDelivery.webhook_id == webhook_id
    )
    if delivery_id is not None:
        query = query.where(WebhookDelivery.id == delivery_id)
    else:
        query = query.where(WebhookDelivery.state == "failed")
    rows = list(await conn.execute(query.order_by(WebhookDelivery.id)))
    await enqueue(
        conn,
        [
            {
                "webhook_id": webhook_id,
                "event_uid": uid,
                "action": action,
                "body": body,
                "state": "pending",
                "attempts": 0,
                "created_at": moment,
                "next_attempt_at": moment,
            }
            for uid, action, body in rows
        ],
    )
    return len(rows)


async def backlog(conn: AsyncConnection) -> dict[str, int]:
    """Pending and failed deliveries, over every endpoint: each counted in a partial
    index of its own (the delivered ones, kept for the audit retention, are not)."""
    counts = [
        select(func.count())
        .select_from(WebhookDelivery)
        .where(WebhookDelivery.state == state)
        .scalar_subquery()
        for state in BACKLOG_STATES
    ]
    row = (await conn.execute(select(*counts))).one()
    return {state: int(count) for state, count in zip(BACKLOG_STATES, row, strict=True)}
