"""The audit log in the console: filters (time range, actor, namespace, action,
outcome), pages of events newest first, a link from each to what it concerns, and the
same selection as JSON lines. Owners read their namespaces' events, admins everything:
the rule of /api/v1/audit (services/audit.audit_filter)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from registry.auth.sessions import Session
from registry.errors import Denied, Invalid, RegistryError
from registry.paging import fetch
from registry.requests import registry_of
from registry.services.audit import AuditFilter, audit_filter
from registry.web import urls
from registry.web.manage import accounts_of
from registry.web.pages import console, page

FIELDS = ("since", "until", "actor", "namespace", "action", "outcome")
OUTCOMES = ("success", "failure", "denied")
PAGE = 50
EXPORT_BATCH = 1000


def _moment(text: str, label: str) -> datetime | None:
    """A time from the form's datetime-local field (taken as UTC), or ISO 8601."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(message=f"{label}: {text[:40]!r} is not a date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _selection(request: Request, session: Session) -> tuple[AuditFilter, dict[str, str]]:
    """The filter the query asks for, as the caller may read it, and the query's fields."""
    given = {k: request.query_params.get(k, "").strip()[:200] for k in FIELDS}
    owned = await accounts_of(request).owned_namespaces(session.identity)
    if owned is not None and not owned:
        raise Denied(message="the audit log is for the owners of a namespace and for admins")
    if owned is not None and not given["namespace"]:
        given["namespace"] = min(owned)  # an owner reads one namespace at a time
    which = audit_filter(
        owned,
        since=_moment(given["since"], "From"),
        until=_moment(given["until"], "Until"),
        actor=given["actor"] or None,
        action=given["action"] or None,
        outcome=given["outcome"] if given["outcome"] in OUTCOMES else None,
        namespace=given["namespace"] or None,
    )
    return which, given


@console
async def audit(request: Request, session: Session) -> Response:
    owned = await accounts_of(request).owned_namespaces(session.identity)
    shown: dict[str, Any] = {"events": [], "older": None, "failed": None}
    given = {k: request.query_params.get(k, "") for k in FIELDS}
    try:
        which, given = await _selection(request, session)
        before = request.query_params.get("before", "")
        log = registry_of(request).audit
        found = await fetch(
            lambda n: log.search(which, int(before) if before.isdigit() else None, n), PAGE
        )
        shown["events"] = [_row(body) for _, body in found.items]
        if found.more:
            shown["older"] = urlencode({**given, "before": found.items[-1][0]})
        shown["export"] = urlencode(given)
    except RegistryError as exc:
        shown["failed"] = exc.text
    return page(
        "audit.html",
        session=session,
        given=given,
        outcomes=OUTCOMES,
        namespaces=sorted(owned) if owned is not None else None,
        **shown,
    )


@console
async def export(request: Request, session: Session) -> Response:
    """The selection as JSON lines, newest first, every page of it."""
    which, _ = await _selection(request, session)
    log = registry_of(request).audit

    async def lines() -> AsyncIterator[bytes]:
        before = None
        while True:
            rows = await log.search(which, before, EXPORT_BATCH)
            for _, body in rows:
                yield json.dumps(body, separators=(",", ":")).encode() + b"\n"
            if len(rows) < EXPORT_BATCH:
                return
            before = rows[-1][0]

    headers = {"Content-Disposition": 'attachment; filename="audit.jsonl"'}
    return StreamingResponse(lines(), media_type="application/x-ndjson", headers=headers)


def _row(body: dict[str, Any]) -> dict[str, Any]:
    """An event as the page shows it, with a link to what it concerns, if that is a
    page of the console."""
    target = body.get("target") or {}
    repository = target.get("repository")
    link = None
    if repository and target.get("digest") and target.get("mediaType", "").endswith("json"):
        link = urls.MANIFEST(name=repository, reference=target["digest"])
    elif repository:
        link = urls.TAGS(name=repository)
    elif body.get("namespace"):
        link = urls.NAMESPACE(namespace=body["namespace"])
    what = repository or body.get("namespace") or ""
    if target.get("tag"):
        what += f":{target['tag']}"
    elif target.get("digest"):
        what += f"@{target['digest'][:19]}"
    return {**body, "link": link, "what": what}
