"""A namespace's settings in the console: visibility, immutable tags, retention (with a
preview of what it would delete now, made by the retention code itself), and the quota
against what is stored. The same services and checks as /api/v1/namespaces/<ns>/policy:
owners set immutable rules and retention; lifting a rule, the quota and visibility take
an admin. The services audit each change."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry import readable
from registry.auth.accounts import Accounts
from registry.auth.sessions import Session
from registry.errors import Denied, Invalid, RouteUnknown
from registry.requests import registry_of
from registry.services.policies import parse_retention
from registry.web import urls
from registry.web.manage import admins_only, owned_namespace
from registry.web.pages import console, field, page, see

PARTS = ("visibility", "immutable", "retention", "quota")
UNITS = {"MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}


@console
async def settings(request: Request, session: Session) -> Response:
    name, accounts = await owned_namespace(request, session)
    saved = request.query_params.get("saved")
    return await _page(request, session, name, accounts, saved=saved if saved in PARTS else None)


@console
async def change(request: Request, session: Session) -> Response:
    """One part's form; a refusal or a mistake shows the page again with the message
    beside that part and what was typed kept."""
    name, accounts = await owned_namespace(request, session)
    part = request.path_params["part"]
    if part not in PARTS:
        raise RouteUnknown(message=f"no setting {part[:50]!r} of a namespace")
    registry = registry_of(request)
    admin = session.identity.admin
    typed = dict(request.state.form)
    try:
        if part == "visibility":
            admins_only(session)
            await accounts.set_public(name, field(request, "public") == "on")
        elif part == "immutable":
            patterns = _lines(field(request, "patterns"))
            await registry.policies.update(name, {"immutable_tags": patterns}, admin=admin)
        elif part == "retention":
            retention = _retention(request)
            if field(request, "do") == "preview":
                current = await registry.policies.get(name)
                proposed = dataclasses.replace(current, retention=parse_retention(retention))
                found = await registry.retention.preview(proposed)
                return await _page(request, session, name, accounts, preview=found, typed=typed)
            await registry.policies.update(name, {"retention": retention}, admin=admin)
        else:
            await registry.policies.update(name, {"quota_bytes": _quota(request)}, admin=admin)
    except (Invalid, Denied) as exc:
        failed = {"part": part, "message": exc.text}
        return await _page(
            request, session, name, accounts, failed=failed, typed=typed, status=exc.status
        )
    return see(f"{urls.SETTINGS(namespace=name)}?saved={part}#{part}")


async def _page(
    request: Request,
    session: Session,
    name: str,
    accounts: Accounts,
    status: int = 200,
    **shown: Any,
) -> Response:
    registry = registry_of(request)
    listed = await accounts.list_namespaces()
    public = next((p for n, p, _ in listed if n == name), False)
    return page(
        "namespace_settings.html",
        status,
        session=session,
        namespace=name,
        public=public,
        policy=(await registry.policies.get(name)).to_json(),
        usage=await registry.usage.namespace(name),
        units=list(UNITS),
        retention_every=readable.duration(registry.settings.gc.retention_interval_seconds),
        **{"typed": {}, "preview": None, "failed": None, "saved": None, **shown},
    )


def _lines(text: str) -> list[str]:
    """Patterns, one a line (blank lines and spaces around them dropped)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _number(request: Request, key: str, label: str, *, integer: bool) -> float | None:
    text = field(request, key).strip()
    if not text:
        return None
    try:
        return int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise Invalid({"field": key}, message=f"{label}: {text[:30]!r} is not {kind}") from None


def _retention(request: Request) -> dict[str, Any] | None:
    """The retention form as the policy's JSON (None: no retention)."""
    if field(request, "enabled") != "on":
        return None
    return {
        "keep_last": _number(request, "keep_last", "Keep the last", integer=True),
        "keep_tags": _lines(field(request, "keep_tags")),
        "older_than_days": _number(request, "older_than_days", "Older than", integer=False),
    }


def _quota(request: Request) -> int | None:
    amount = _number(request, "quota", "Quota", integer=False)
    unit = UNITS.get(field(request, "unit"))
    if amount is None:
        return None
    if unit is None:
        raise Invalid({"field": "unit"}, message=f"Quota: the unit is one of {', '.join(UNITS)}")
    return round(amount * unit)
