"""Replication in the console: remotes (added once they answer, tested, removed), rules
(added, run now, removed), recent runs, and a run's items with each one's outcome and
reason, its failed items queued again in one click. Those of the namespaces the user
owns, and for admins the registry's own too (shown as "every namespace"); the same
services and the same rule as /api/v1/remotes and /api/v1/replication."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.auth.sessions import Session
from registry.errors import Invalid, RegistryError
from registry.replication.filters import KINDS
from registry.replication.rules import DIRECTIONS, TRIGGERS, RuleSpec
from registry.requests import registry_of
from registry.web import urls
from registry.web.manage import (
    REGISTRY_WIDE,
    accounts_of,
    confirmed_removal,
    may_manage,
    namespace_in_path,
)
from registry.web.pages import console, field, fields, page, see

ITEM_STATES = ("pending", "running", "copied", "skipped", "failed")
RUNS_SHOWN = 30
ITEMS_SHOWN = 200


def _globs(request: Request, name: str) -> list[str]:
    return field(request, name).replace(",", " ").split()


@console
async def replication(request: Request, session: Session) -> Response:
    return await _overview(request, session)


async def _overview(
    request: Request, session: Session, status: int = 200, **shown: object
) -> Response:
    owned = await accounts_of(request).owned_namespaces(session.identity)
    registry = registry_of(request)
    remotes = [
        r for r in await registry.remotes.listed(None) if owned is None or r.namespace in owned
    ]
    rules = [
        r for r in await registry.replication.listed(None) if owned is None or r.namespace in owned
    ]
    runs = await registry.replication.recent([r.id for r in rules], RUNS_SHOWN)
    return page(
        "replication.html",
        status,
        session=session,
        remotes=remotes,
        rules=rules,
        names={r.id: r for r in rules},
        runs=runs,
        # Where a user may add: the namespaces they own, and for admins "" too.
        namespaces=[""] if owned is None else sorted(owned),
        everywhere=REGISTRY_WIDE,
        directions=DIRECTIONS,
        triggers=TRIGGERS,
        kinds=KINDS,
        typed=dict(request.state.form) if status != 200 else {},
        **{"failed": None, "failed_part": None, "notice": None, **shown},
    )


@console
async def add_remote(request: Request, session: Session) -> Response:
    namespace = field(request, "namespace")
    try:
        await may_manage(request, session, namespace)
        await registry_of(request).remotes.add(
            namespace,
            field(request, "name").strip(),
            field(request, "url").strip(),
            username=field(request, "username").strip() or None,
            password=field(request, "password") or None,
            verify_tls=field(request, "verify_tls") == "on",
            ca_pem=field(request, "ca_pem").strip() or None,
        )
    except RegistryError as exc:
        return await _overview(request, session, exc.status, failed=exc.text, failed_part="remote")
    return see(urls.REPLICATION())


@console
async def test_remote(request: Request, session: Session) -> Response:
    namespace, name = namespace_in_path(request), request.path_params["remote"]
    await may_manage(request, session, namespace)
    remotes = registry_of(request).remotes
    try:
        await remotes.check(await remotes.endpoint(namespace, name))
    except Invalid as exc:
        return await _overview(request, session, exc.status, failed=exc.text, failed_part="remotes")
    return await _overview(request, session, notice=f"Remote {name} answers.")


@console
async def remove_remote(request: Request, session: Session) -> Response:
    return await confirmed_removal(
        request,
        session,
        kind="remote",
        path=urls.REMOVE_REMOTE,
        what="the remote",
        back=urls.REPLICATION(),
        consequence="Its password goes with it. Rules that use it must go first.",
        remove=registry_of(request).remotes.remove,
    )


@console
async def add_rule(request: Request, session: Session) -> Response:
    namespace = field(request, "namespace")
    spec = RuleSpec(
        name=field(request, "name").strip(),
        direction=field(request, "direction"),
        remote=field(request, "remote").strip(),
        repositories=_globs(request, "repositories"),
        tags=_globs(request, "tags"),
        kinds=fields(request, "kinds"),
        destination=field(request, "destination").strip(),
        strip=_number(field(request, "strip")),
        overwrite=field(request, "overwrite") == "on",
        deletions=field(request, "deletions") == "on",
        trigger=field(request, "trigger"),
        schedule=field(request, "schedule").strip() or None,
        bandwidth=_number(field(request, "bandwidth")),
        blobs_at_once=_number(field(request, "blobs_at_once"), 4),
        enabled=True,
        signed_only=field(request, "signed_only") == "on",
    )
    try:
        await may_manage(request, session, namespace)
        await registry_of(request).replication.add(namespace, spec)
    except RegistryError as exc:
        return await _overview(request, session, exc.status, failed=exc.text, failed_part="rule")
    return see(urls.REPLICATION())


@console
async def run_rule(request: Request, session: Session) -> Response:
    namespace, name = namespace_in_path(request), request.path_params["rule"]
    await may_manage(request, session, namespace)
    run = await registry_of(request).replication.run_now(namespace, name)
    return see(urls.RUN(run=str(run)))


@console
async def remove_rule(request: Request, session: Session) -> Response:
    return await confirmed_removal(
        request,
        session,
        kind="rule",
        path=urls.REMOVE_RULE,
        what="the replication rule",
        back=urls.REPLICATION(),
        consequence="It copies nothing from now on; its runs and their items go with it. "
        "What it copied stays where it is.",
        remove=registry_of(request).replication.remove,
    )


@console
async def run(request: Request, session: Session) -> Response:
    """A run and its items, by state."""
    rules = registry_of(request).replication
    ident = request.path_params["run"]
    found, rule = await rules.run_anywhere(int(ident) if ident.isdigit() else 0)
    await may_manage(request, session, rule.namespace)
    state = request.query_params.get("state")
    state = state if state in ITEM_STATES else None
    items = await rules.items(rule.namespace, found.id, state, None, ITEMS_SHOWN)
    return page(
        "replication_run.html",
        session=session,
        run=found,
        rule=rule,
        items=items,
        state=state,
        states=ITEM_STATES,
        shown=ITEMS_SHOWN,
        queued=request.query_params.get("retried"),
    )


@console
async def retry(request: Request, session: Session) -> Response:
    rules = registry_of(request).replication
    ident = request.path_params["run"]
    found, rule = await rules.run_anywhere(int(ident) if ident.isdigit() else 0)
    await may_manage(request, session, rule.namespace)
    again = await rules.retry(rule.namespace, found.id)
    return see(f"{urls.RUN(run=str(again))}?retried={found.id}")


def _number(text: str, default: int = 0) -> int:
    text = text.strip()
    return int(text) if text.isdigit() and len(text) < 16 else default
