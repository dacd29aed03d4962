"""What the console's dashboard draws: pushes per day (from the events), pulls per day
and the bytes stored each day (daily_activity, migration 0021), the busiest
repositories, failed webhook deliveries. Each takes an open connection; the caller owns
the transaction. The writers take the rows in namespace order, so that a pull flush and
a collection pass writing the same day cannot deadlock on PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, literal, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import (
    DailyActivity,
    Event,
    NamespaceUsage,
    Repository,
    RepositoryPulls,
    Webhook,
    WebhookDelivery,
)
from registry.metadata.statements import dialect_insert

# A blob's push event: its target is application/octet-stream (events.BLOB_TYPE).
_BLOB_PUSH = '"mediaType":"application/octet-stream"'


async def record_stored(conn: AsyncConnection, day: date) -> None:
    """Today's stored bytes of every namespace: a row added once a day, changed when
    its total moved (the collection worker, after each fold)."""
    rows = (
        select(literal(day), NamespaceUsage.namespace, literal(0), NamespaceUsage.bytes)
        .where(true())  # SQLite: an upsert's SELECT needs a WHERE to parse
        .order_by(NamespaceUsage.namespace)
    )
    stmt = dialect_insert(conn, DailyActivity).from_select(
        ["day", "namespace", "pulls", "stored_bytes"], rows
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[DailyActivity.day, DailyActivity.namespace],
            set_={"stored_bytes": stmt.excluded.stored_bytes},
            where=DailyActivity.stored_bytes.is_distinct_from(stmt.excluded.stored_bytes),
        )
    )


async def add_pulls(conn: AsyncConnection, day: date, pulls: Mapping[int, int]) -> None:
    """Add pulls (repository id -> count) to their namespaces' row of `day`."""
    if not pulls:
        return
    by_namespace: dict[str, int] = defaultdict(int)
    found = await conn.execute(
        select(Repository.id, Repository.namespace).where(Repository.id.in_(list(pulls)))
    )
    for ident, namespace in found:
        by_namespace[namespace] += pulls[ident]
    for namespace in sorted(by_namespace):
        stmt = dialect_insert(conn, DailyActivity).values(
            day=day, namespace=namespace, pulls=by_namespace[namespace]
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[DailyActivity.day, DailyActivity.namespace],
                set_={"pulls": DailyActivity.pulls + stmt.excluded.pulls},
            )
        )


def _in(column: Any, namespaces: Collection[str] | None) -> ColumnElement[bool]:
    return true() if namespaces is None else column.in_(list(namespaces))


async def pushes_per_day(
    conn: AsyncConnection, since: datetime, namespaces: Collection[str] | None
) -> dict[date, int]:
    """Manifests pushed per UTC day (blob pushes left out)."""
    day = func.date(Event.created_at)
    rows = await conn.execute(
        select(day, func.count())
        .where(
            Event.action == "push",
            Event.created_at >= since,
            ~Event.body.contains(_BLOB_PUSH),
            _in(Event.namespace, namespaces),
        )
        .group_by(day)
    )
    return {_day(d): int(n) for d, n in rows}


async def pulls_per_day(
    conn: AsyncConnection, since: date, namespaces: Collection[str] | None
) -> dict[date, int]:
    rows = await conn.execute(
        select(DailyActivity.day, func.sum(DailyActivity.pulls))
        .where(DailyActivity.day >= since, _in(DailyActivity.namespace, namespaces))
        .group_by(DailyActivity.day)
    )
    return {_day(d): int(n or 0) for d, n in rows}


async def stored_per_day(
    conn: AsyncConnection, since: date, until: date, namespaces: Collection[str] | None
) -> dict[date, int]:
    """The bytes stored at the end of each day from `since` to `until`: each namespace's
    last known total on or before that day (a day without a change has no row)."""
    known = _in(DailyActivity.namespace, namespaces)
    before = (
        select(DailyActivity.namespace, func.max(DailyActivity.day).label("day"))
        .where(DailyActivity.day < since, DailyActivity.stored_bytes.is_not(None), known)
        .group_by(DailyActivity.namespace)
        .subquery()
    )
    rows = await conn.execute(
        select(DailyActivity.day, DailyActivity.namespace, DailyActivity.stored_bytes).where(
            DailyActivity.stored_bytes.is_not(None),
            known,
            (DailyActivity.day >= since)
            | DailyActivity.day.in_(
                select(before.c.day).where(before.c.namespace == DailyActivity.namespace)
            ),
        )
    )
    latest: dict[str, int] = {}
    changes: dict[date, dict[str, int]] = defaultdict(dict)
    for day, namespace, stored in sorted(rows, key=lambda r: _day(r[0])):
        if _day(day) < since:
            latest[namespace] = int(stored or 0)
        else:
            changes[_day(day)][namespace] = int(stored or 0)
    totals = {}
    day = since
    while day <= until:
        latest.update(changes.get(day, {}))
        totals[day] = sum(latest.values())
        day = date.fromordinal(day.toordinal() + 1)
    return totals


async def busiest(
    conn: AsyncConnection, namespaces: Collection[str] | None, limit: int
) -> list[tuple[str, int]]:
    """(repository, pulls) of the most pulled repositories."""
    rows = await conn.execute(
        select(Repository.name, RepositoryPulls.pulls)
        .join(RepositoryPulls, RepositoryPulls.repository_id == Repository.id)
        .where(_in(Repository.namespace, namespaces))
        .order_by(RepositoryPulls.pulls.desc(), Repository.name)
        .limit(limit)
    )
    return [(name, int(pulls)) for name, pulls in rows]


async def failed_deliveries(
    conn: AsyncConnection, namespaces: Collection[str] | None
) -> list[tuple[int, str, int]]:
    """(webhook id, URL, failed deliveries) of the webhooks that have any."""
    scope = true() if namespaces is None else Webhook.namespace.in_(list(namespaces))
    rows = await conn.execute(
        select(Webhook.id, Webhook.url, func.count())
        .join(WebhookDelivery, WebhookDelivery.webhook_id == Webhook.id)
        .where(WebhookDelivery.state == "failed", scope)
        .group_by(Webhook.id, Webhook.url)
        .order_by(func.count().desc())
    )
    return [(int(i), url, int(n)) for i, url, n in rows]


def _day(value: date | str) -> date:
    """SQLite's date() answers text."""
    return value if isinstance(value, date) else date.fromisoformat(value)
