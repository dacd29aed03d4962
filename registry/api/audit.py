"""/api/v1/audit: the audit log, newest first, filtered by time, actor, namespace, action
and outcome; admins see all of it, a namespace's owners that namespace's events.
/api/v1/audit/export streams the same rows as JSON lines (for jq, or a SIEM)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import StreamingResponse

from registry.api.access import owned_by_caller
from registry.api.declare import Answer, Operations, Page, PageQuery, id_key
from registry.paging import fetch
from registry.requests import registry_of
from registry.services.audit import AuditFilter, audit_filter

OPERATIONS = Operations(tag="events")

EXPORT_BATCH = 1000


class AuditQuery(PageQuery):
    since: datetime | None = Field(None, description="from this time (ISO 8601), inclusive")
    until: datetime | None = Field(None, description="before this time")
    actor: str | None = Field(None, description="a user or robot name, or gc, retention")
    namespace: str | None = None
    action: str | None = Field(
        None, description="an action (push, login, ...), or a prefix ending in . (user.)"
    )
    outcome: Literal["success", "failure", "denied"] | None = None


class Actor(Answer):
    name: str
    kind: str
    token: str | None = Field(None, description="the id (jti) of the token used")


class AuditEvent(Answer):
    id: str = Field(description="the event's id, as webhooks send it")
    timestamp: str
    action: str
    outcome: str
    actor: Actor
    namespace: str | None = None
    target: dict[str, Any] | None = None
    request: dict[str, Any] | None = Field(
        None, description="id, addr (the client, as a trusted proxy forwards it), host, ..."
    )
    source: dict[str, Any]
    detail: dict[str, Any] | None = None


async def _filter(request: Request, query: AuditQuery) -> AuditFilter:
    owned = await owned_by_caller(request, "read the audit log")
    return audit_filter(owned, **query.model_dump(exclude={"n", "last"}))


@OPERATIONS.operation(
    "GET",
    "/api/v1/audit",
    summary="The audit log, newest first (admins; owners: ?namespace= theirs)",
    query=AuditQuery,
    response=AuditEvent,
    paged="events",
)
async def audit(request: Request, query: AuditQuery) -> Page[AuditEvent]:
    which = await _filter(request, query)
    log = registry_of(request).audit
    found = await fetch(lambda n: log.search(which, id_key(query.last), n), query.size)
    items = [AuditEvent.model_validate(body) for _, body in found.items]
    last = str(found.items[-1][0]) if found.more else None
    return Page(items, last, query.size)


@OPERATIONS.operation(
    "GET",
    "/api/v1/audit/export",
    summary="The audit log as JSON lines, newest first, with the same filters (no paging)",
    query=AuditQuery,
    streams="application/x-ndjson",
)
async def export(request: Request, query: AuditQuery) -> StreamingResponse:
    which = await _filter(request, query)
    registry = registry_of(request)
    start = id_key(query.last)  # refused now, not after the answer has begun

    async def lines() -> AsyncIterator[bytes]:
        before = start
        while True:
            rows = await registry.audit.search(which, before, EXPORT_BATCH)
            for _, body in rows:
                event = AuditEvent.model_validate(body).model_dump(mode="json")
                yield json.dumps(event, separators=(",", ":")).encode() + b"\n"
            if len(rows) < EXPORT_BATCH:
                return
            before = rows[-1][0]

    return StreamingResponse(lines(), media_type="application/x-ndjson")
