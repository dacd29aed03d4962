"""Events: the audit log and the webhook outbox (migration 0014). A change records its
event in its own transaction, with who and where from `registry.context`; each
function takes an open connection and the caller owns the transaction.

The body is Distribution's notification event (id, timestamp, action, target, request,
actor, source), with the outcome and any detail added, so webhooks send it unchanged.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from registry import context
from registry.metadata.models import Event, WebhookDelivery, now
from registry.metadata.statements import Statement
from registry.names import namespace_of

# The actions whose events webhooks may get; the others (logins, tokens, account and
# setting changes) are for the audit log only.
WEBHOOK_ACTIONS = (
    "push",
    "pull",
    "mount",
    "delete",
    "tag",
    "mirror",
    "quota",
    "gc",
    "replication",
    "signature",
)
# What a webhook subscribes to: those actions, with a blob's push apart from a
# manifest's (`push` is an image, index or artifact arriving, as Harbor and Quay
# notify; `blob` is each layer and config, as Distribution sends them too).
WEBHOOK_KINDS = ("push", "blob", *WEBHOOK_ACTIONS[1:])
# The media type of a blob in events: a registry does not know what a blob holds.
BLOB_TYPE = "application/octet-stream"


def kind(event: Mapping[str, Any]) -> str:
    """What a webhook subscribes to for `event`: one of WEBHOOK_KINDS."""
    action = str(event["action"])
    if action == "push" and event.get("target", {}).get("mediaType") == BLOB_TYPE:
        return "blob"
    return action


# Identifies this process in events' `source`, as Distribution's instanceID does.
INSTANCE = str(uuid.uuid4())
_HOST = socket.gethostname()


def event(
    action: str,
    *,
    repository: str | None = None,
    namespace: str | None = None,
    target: Mapping[str, Any] | None = None,
    outcome: str = "success",
    detail: Mapping[str, Any] | None = None,
    moment: datetime | None = None,
    by: context.Context | None = None,
) -> dict[str, Any]:
    """The row of one event, caused by what `by` (default: the current context) serves."""
    ctx = by or context.current()
    moment = moment or now()
    uid = str(uuid.uuid4())
    if namespace is None and repository is not None:
        namespace = namespace_of(repository)
    body: dict[str, Any] = {
        "id": uid,
        "timestamp": moment.isoformat(),
        "action": action,
        "outcome": outcome,
        "actor": {"name": ctx.actor, "kind": ctx.actor_kind},
        "source": {"addr": _HOST, "instanceID": INSTANCE},
    }
    if ctx.token:
        body["actor"]["token"] = ctx.token
    if repository is not None or target:
        body["target"] = {**(target or {}), **({"repository": repository} if repository else {})}
    if ctx.request_id is not None:
        body["request"] = {
            "id": ctx.request_id,
            "addr": ctx.address,
            "host": ctx.host,
            "method": ctx.method,
            "useragent": ctx.user_agent,
        }
    if namespace is not None:
        body["namespace"] = namespace
    if detail:
        body["detail"] = dict(detail)
    return {
        "uid": uid,
        "created_at": moment,
        "action": action,
        "outcome": outcome,
        "actor": ctx.actor[:255],
        "actor_kind": ctx.actor_kind,
        "namespace": namespace,
        "repository": repository,
        "address": (ctx.address or "")[:64] or None,
        "body": json.dumps(body, separators=(",", ":")),
        # Only what a webhook may want goes through the outbox.
        "dispatched": action not in WEBHOOK_ACTIONS,
    }


def descriptor(
    repository: str, kind: str, digest: str, media_type: str, size: int, **extra: Any
) -> dict[str, Any]:
    """An event's target: a blob or manifest (`kind`: blobs or manifests), with the URL
    it is pulled from, as Distribution's events have it."""
    found: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    found["length"] = size
    ctx = context.current()
    if ctx.host:
        found["url"] = f"{ctx.scheme}://{ctx.host}/v2/{repository}/{kind}/{digest}"
    found.update({key: value for key, value in extra.items() if value is not None})
    return found


_COLUMNS = (
    "uid, created_at, action, outcome, actor, actor_kind, namespace, repository, address, "
    "body, dispatched"
)
_VALUES = (
    ":uid, :created_at, :action, :outcome, :actor, :actor_kind, :namespace, :repository, "
    ":address, :body, :dispatched"
)
# An event (the keys of `event`) in a program's transaction (services/manifests.py).
RECORD = Statement("record_event", f"INSERT INTO events ({_COLUMNS}) VALUES ({_VALUES})")
# The event of a blob push, if the repository links the blob now: one row when the push
# stands, none when the quota refused the link (metadata/blobs.py, LINK).
RECORD_IF_LINKED = Statement(
    "record_linked_event",
    f"INSERT INTO events ({_COLUMNS}) SELECT {_VALUES} WHERE EXISTS (SELECT 1 FROM "
    "repository_blobs WHERE repository_id = (SELECT id FROM repositories WHERE name = "
    ":repository) AND digest = :digest)",
)


def as_json(rows: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None) -> str | None:
    """Events rows (or one) as JSON, as PostgreSQL's functions take them
    (jsonb_populate_record: migrations 0028 and 0029)."""

    def default(value: object) -> str:
        assert isinstance(value, datetime)
        return value.isoformat()

    return None if rows is None else json.dumps(rows, default=default)


async def record(conn: AsyncConnection, action: str, **fields: Any) -> None:
    """Record one event (the arguments of `event`) in the caller's transaction."""
    await conn.execute(insert(Event).values(**event(action, **fields)))


async def record_all(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(Event), list(rows))


# The audit log


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    action: str | None = None  # an action, or a prefix ending in "." (user.)
    outcome: str | None = None
    # Only these namespaces (an owner's); None: all, and events of none too.
    namespaces: Sequence[str] | None = None
    namespace: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.since is not None:
            found.append(Event.created_at >= self.since)
        if self.until is not None:
            found.append(Event.created_at < self.until)
        if self.actor is not None:
            found.append(Event.actor == self.actor)
        if self.action is not None:
            if self.action.endswith("."):
                found.append(Event.action.startswith(self.action, autoescape=True))
            else:
                found.append(Event.action == self.action)
        if self.outcome is not None:
            found.append(Event.outcome == self.outcome)
        if self.namespace is not None:
            found.append(Event.namespace == self.namespace)
        if self.namespaces is not None:
            found.append(Event.namespace.in_(list(self.namespaces)))
        return found


async def audit(
    conn: AsyncConnection, which: AuditFilter, before: int | None, limit: int
) -> list[tuple[int, dict[str, Any]]]:
    """Events newest first (id, body), those with ids below `before` if given."""
    query = select(Event.id, Event.body).where(*which.conditions())
    if before is not None:
        query = query.where(Event.id < before)
    rows = await conn.execute(query.order_by(Event.id.desc()).limit(limit))
    return [(int(ident), json.loads(body)) for ident, body in rows]


async def prune(conn: AsyncConnection, cutoff: datetime) -> tuple[int, int]:
    """Delete events older than `cutoff` that need no delivery any more, and finished
    deliveries as old; (events, deliveries) deleted."""
    events = await conn.execute(
        delete(Event).where(Event.created_at < cutoff, Event.dispatched.is_(True))
    )
    deliveries = await conn.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.created_at < cutoff, WebhookDelivery.state != "pending"
        )
    )
    return events.rowcount or 0, deliveries.rowcount or 0


# The outbox


async def undispatched(conn: AsyncConnection, limit: int) -> list[tuple[int, dict[str, Any]]]:
    rows = await conn.execute(
        select(Event.id, Event.body)
        .where(Event.dispatched.is_(False))
        .order_by(Event.id)
        .limit(limit)
    )
    return [(int(ident), json.loads(body)) for ident, body in rows]


async def mark_all_dispatched(conn: AsyncConnection) -> int:
    result = await conn.execute(
        update(Event).where(Event.dispatched.is_(False)).values(dispatched=True)
    )
    return result.rowcount


async def mark_dispatched(conn: AsyncConnection, ids: Sequence[int]) -> None:
    if ids:
        await conn.execute(update(Event).where(Event.id.in_(ids)).values(dispatched=True))
