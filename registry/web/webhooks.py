"""Webhooks in the console: those of the namespaces the user owns (admins: every one,
and the global ones), made with their secret shown once, changed, switched off and on,
tested with a ping, and their deliveries with each attempt, sent again one by one or
every failed one. The same service and the same rule as /api/v1/webhooks: a namespace's
owners manage its webhooks, admins the global ones. The service audits each change."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry import context
from registry.auth.accounts import deny_unless_owner
from registry.auth.sessions import Session
from registry.errors import Denied, Invalid, RegistryError
from registry.paging import fetch
from registry.requests import registry_of
from registry.services.webhooks import WEBHOOK_KINDS, Endpoint
from registry.web import urls
from registry.web.manage import accounts_of, admins_only
from registry.web.pages import confirm, console, field, fields, page, see

FORMATS = ("distribution", "cloudevents")
STATES = ("pending", "delivered", "failed")
PAGE = 50
ATTEMPTS = 20  # the log's newest; the API pages through the rest


async def _managed(request: Request, session: Session) -> Endpoint:
    """The webhook of the path, if the user manages it."""
    text = request.path_params["ident"]
    endpoint = await registry_of(request).webhooks.get(int(text) if text.isdigit() else 0)
    if endpoint.namespace is None:
        admins_only(session)
    else:
        await deny_unless_owner(accounts_of(request), session.identity, endpoint.namespace)
    return endpoint


def _form(request: Request) -> dict[str, Any]:
    """The fields of a webhook's form, as the service takes them."""
    return {
        "url": field(request, "url").strip(),
        "events": fields(request, "events"),
        "repositories": field(request, "repositories").strip() or None,
        "tags": field(request, "tags").strip() or None,
        "form": field(request, "format"),
    }


@console
async def webhooks(request: Request, session: Session) -> Response:
    """The list, and the form that adds one (POST)."""
    owned = await accounts_of(request).owned_namespaces(session.identity)
    service = registry_of(request).webhooks
    created = failed = None
    if request.method == "POST":
        namespace = field(request, "namespace") or None
        try:
            if namespace is None:
                admins_only(session)
            elif owned is not None and namespace not in owned:
                raise Denied(message=f"only an owner of {namespace!r} or an admin may do this")
            created = await service.add(
                namespace=namespace,
                **_form(request),
                secret=field(request, "secret") or None,
                created_by=context.current().actor or "anonymous",
            )
        except (Invalid, Denied) as exc:
            failed = exc
    listed = await service.endpoints(None if owned is None else sorted(owned))
    if owned is not None:  # a user who owns none sees none (the service's None is all)
        listed = [e for e in listed if e.namespace in owned]
    return page(
        "webhooks.html",
        failed.status if failed else 200,
        session=session,
        webhooks=listed,
        namespaces=sorted(owned) if owned is not None else None,
        kinds=WEBHOOK_KINDS,
        formats=FORMATS,
        created=created,
        failed=failed.text if failed else None,
        typed=dict(request.state.form) if failed else {},
    )


@console
async def webhook(request: Request, session: Session) -> Response:
    """One webhook: its settings, its deliveries (by state, newest first, paged by id)."""
    endpoint = await _managed(request, session)
    saved = request.query_params.get("saved") == "1"
    return await _webhook_page(request, session, endpoint, saved=saved)


async def _webhook_page(
    request: Request,
    session: Session,
    endpoint: Endpoint,
    status: int = 200,
    **shown: Any,
) -> Response:
    service = registry_of(request).webhooks
    state = request.query_params.get("state")
    state = state if state in STATES else None
    before = request.query_params.get("before", "")
    found = await fetch(
        lambda n: service.deliveries(
            endpoint.id, state, int(before) if before.isdigit() else None, n
        ),
        PAGE,
    )
    older = None
    if found.more:
        older = f"?{'state=' + state + '&' if state else ''}before={found.items[-1]['id']}"
    return page(
        "webhook.html",
        status,
        session=session,
        hook=endpoint,
        deliveries=found.items,
        state=state,
        states=STATES,
        older=older,
        attempts=await service.attempts(endpoint.id, None, ATTEMPTS),
        kinds=WEBHOOK_KINDS,
        formats=FORMATS,
        **{"tested": None, "failed": None, "saved": None, "queued": None, **shown},
    )


@console
async def change(request: Request, session: Session) -> Response:
    endpoint = await _managed(request, session)
    service = registry_of(request).webhooks
    changes = _form(request)
    changes["format"] = changes.pop("form")
    changes["enabled"] = field(request, "enabled") == "on"
    if field(request, "secret"):
        changes["secret"] = field(request, "secret")
    try:
        if len(changes.get("secret", "x" * 16)) < 16:
            raise Invalid(message="a secret is at least 16 characters")
        await service.change(endpoint.id, changes)
    except RegistryError as exc:
        return await _webhook_page(request, session, endpoint, exc.status, failed=exc.text)
    return see(f"{urls.WEBHOOK(ident=str(endpoint.id))}?saved=1")


@console
async def test(request: Request, session: Session) -> Response:
    endpoint = await _managed(request, session)
    sent = await registry_of(request).webhooks.test(endpoint.id)
    return await _webhook_page(request, session, endpoint, tested=sent)


@console
async def redeliver(request: Request, session: Session) -> Response:
    """One delivery (its id in the form), or every failed one."""
    endpoint = await _managed(request, session)
    delivery = field(request, "delivery")
    count = await registry_of(request).webhooks.redeliver(
        endpoint.id, int(delivery) if delivery.isdigit() else None
    )
    return await _webhook_page(request, session, endpoint, queued=count)


@console
async def remove(request: Request, session: Session) -> Response:
    endpoint = await _managed(request, session)
    if request.method == "GET":
        return confirm(
            session,
            what=f"the webhook to {endpoint.url}",
            back=urls.WEBHOOK(ident=str(endpoint.id)),
            action=urls.REMOVE_WEBHOOK(ident=str(endpoint.id)),
            consequence="It receives no event from now on; its deliveries and their log go "
            "with it.",
        )
    await registry_of(request).webhooks.remove(endpoint.id)
    return see(urls.WEBHOOKS())
