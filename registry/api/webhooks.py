"""/api/v1/webhooks: endpoints that receive the registry's events, their deliveries and
the delivery log, and redelivery. A namespace's webhooks are its owners' to manage; a
global one (no namespace) is for admins."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request

from registry import context
from registry.api.access import owned_by_caller, require_admin, require_owner
from registry.api.declare import Answer, Body, Operations, Page, PageQuery, id_key
from registry.errors import Invalid
from registry.names import check_namespace
from registry.paging import fetch
from registry.requests import registry_of
from registry.services.webhooks import WEBHOOK_KINDS, Endpoint

OPERATIONS = Operations(tag="events")

Kind = Literal[
    "push", "blob", "pull", "mount", "delete", "tag", "mirror", "quota", "gc", "replication",
    "signature",
]  # fmt: skip
assert set(Kind.__args__) == set(WEBHOOK_KINDS)  # type: ignore[attr-defined]
Format = Literal["distribution", "cloudevents"]
State = Literal["pending", "delivered", "failed"]


class NewWebhook(Body):
    namespace: str | None = Field(None, description="none: a global webhook (admins)")
    url: str
    events: list[Kind] = Field(min_length=1)
    repositories: str | None = Field(None, description="a glob of repository names")
    tags: str | None = Field(None, description="a glob of tags; events without a tag skip")
    secret: str | None = Field(None, min_length=16, description="made for you if left out")
    format: Format = "distribution"


class WebhookChange(Body):
    url: str | None = None
    events: list[Kind] | None = Field(None, min_length=1)
    repositories: str | None = None
    tags: str | None = None
    secret: str | None = Field(None, min_length=16)
    format: Format | None = None
    enabled: bool | None = None


class Webhook(Answer):
    id: int
    namespace: str | None
    url: str
    events: list[str]
    repositories: str | None
    tags: str | None
    format: str
    enabled: bool
    created_at: datetime
    created_by: str


class CreatedWebhook(Webhook):
    secret: str = Field(description="the HMAC key of X-Registry-Signature; shown only now")


class Attempt(Answer):
    id: int
    at: datetime
    status: int | None = Field(description="the HTTP status, none if no answer came")
    seconds: float
    error: str | None
    response: str | None = Field(description="the first KiB of the answer")
    worker: str


class Delivery(Answer):
    id: int
    event: str = Field(description="the event's id")
    action: str
    state: State
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="for a pending one")
    finished_at: datetime | None
    last_attempt: Attempt | None


class LoggedAttempt(Attempt):
    delivery: int
    event: str
    action: str


class Queued(Answer):
    queued: int


class Tested(Answer):
    ok: bool = Field(description="the receiver answered 2xx")
    status: int | None = Field(description="the HTTP status, none if no answer came")
    seconds: float
    error: str | None
    response: str | None = Field(description="the first KiB of the answer")


class WebhookQuery(PageQuery):
    namespace: str | None = None


class DeliveryQuery(PageQuery):
    state: State | None = None


def _webhook(endpoint: Endpoint) -> Webhook:
    fields = {k: getattr(endpoint, k) for k in Webhook.model_fields if k != "events"}
    return Webhook(**fields, events=list(endpoint.events))


async def _manage(request: Request, namespace: str | None) -> None:
    if namespace is None:
        await require_admin(request, "manage global webhooks")
    else:
        await require_owner(request, check_namespace(namespace))


async def webhook_access(request: Request, ident: int, **_: Any) -> Endpoint:
    """The webhook, for its namespace's owners (a global one: admins)."""
    found = await registry_of(request).webhooks.get(ident)
    await _manage(request, found.namespace)
    return found


HOOK = "/api/v1/webhooks/{ident:int}"


async def owned(request: Request) -> set[str] | None:
    return await owned_by_caller(request, "see webhooks")


@OPERATIONS.operation(
    "GET",
    "/api/v1/webhooks",
    summary="Webhooks the caller manages (admins: all)",
    access=owned,
    query=WebhookQuery,
    response=Webhook,
    paged="webhooks",
)
async def list_webhooks(
    request: Request, caller: set[str] | None, query: WebhookQuery
) -> Page[Webhook]:
    namespaces = None if caller is None else sorted(caller)
    if query.namespace is not None:
        namespaces = [n for n in namespaces or [query.namespace] if n == query.namespace]
    found = await registry_of(request).webhooks.endpoints(namespaces)
    return Page.of([_webhook(e) for e in found], lambda w: f"{w.id:012d}", query)


@OPERATIONS.operation(
    "POST",
    "/api/v1/webhooks",
    summary="Add a webhook (a namespace's: its owners; a global one: admins)",
    body=NewWebhook,
    response=CreatedWebhook,
    status=201,
    errors=[404],
)
async def add_webhook(request: Request, body: NewWebhook) -> CreatedWebhook:
    await _manage(request, body.namespace)
    endpoint, secret = await registry_of(request).webhooks.add(
        namespace=body.namespace,
        url=body.url,
        events=body.events,
        repositories=body.repositories,
        tags=body.tags,
        secret=body.secret,
        form=body.format,
        created_by=context.current().actor or "anonymous",
    )
    return CreatedWebhook(**_webhook(endpoint).model_dump(), secret=secret)


@OPERATIONS.operation(
    "GET",
    HOOK,
    summary="One webhook",
    access=webhook_access,
    response=Webhook,
    errors=[404],
)
async def get_webhook(request: Request, ident: int, caller: Endpoint) -> Webhook:
    return _webhook(caller)


@OPERATIONS.operation(
    "PATCH",
    HOOK,
    summary="Change a webhook",
    access=webhook_access,
    body=WebhookChange,
    response=Webhook,
    errors=[404],
)
async def change_webhook(
    request: Request, ident: int, caller: Endpoint, body: WebhookChange
) -> Webhook:
    changes = body.model_dump(exclude_unset=True)
    for key in ("url", "events", "format", "enabled", "secret"):
        if key in changes and changes[key] is None:
            raise Invalid({key: None}, message=f"{key}: may not be null")
    return _webhook(await registry_of(request).webhooks.change(ident, changes))


@OPERATIONS.operation(
    "DELETE",
    HOOK,
    summary="Remove a webhook",
    access=webhook_access,
    errors=[404],
)
async def remove_webhook(request: Request, ident: int, caller: Endpoint) -> None:
    await registry_of(request).webhooks.remove(ident)


@OPERATIONS.operation(
    "GET",
    HOOK + "/deliveries",
    summary="A webhook's deliveries, newest first, each with its last attempt",
    access=webhook_access,
    query=DeliveryQuery,
    response=Delivery,
    paged="deliveries",
    errors=[404],
)
async def deliveries(
    request: Request, ident: int, caller: Endpoint, query: DeliveryQuery
) -> Page[Delivery]:
    webhooks = registry_of(request).webhooks
    found = await fetch(
        lambda n: webhooks.deliveries(ident, query.state, id_key(query.last), n), query.size
    )
    return Page.window(found, _delivery, _id, query.size)


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(
        id=row["id"],
        event=row["event_uid"],
        action=row["action"],
        state=row["state"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"] if row["state"] == "pending" else None,
        finished_at=row["finished_at"],
        last_attempt=_attempt(row["last_attempt"]) if row["last_attempt"] else None,
    )


def _id(item: Delivery | LoggedAttempt) -> str:
    return str(item.id)


def _attempt(row: dict[str, Any]) -> Attempt:
    return Attempt(**{k: row[k] for k in Attempt.model_fields})


@OPERATIONS.operation(
    "GET",
    HOOK + "/attempts",
    summary="A webhook's delivery log: every attempt, newest first",
    access=webhook_access,
    query=PageQuery,
    response=LoggedAttempt,
    paged="attempts",
    errors=[404],
)
async def attempts(
    request: Request, ident: int, caller: Endpoint, query: PageQuery
) -> Page[LoggedAttempt]:
    webhooks = registry_of(request).webhooks
    found = await fetch(lambda n: webhooks.attempts(ident, id_key(query.last), n), query.size)
    return Page.window(found, _logged, _id, query.size)


def _logged(row: dict[str, Any]) -> LoggedAttempt:
    return LoggedAttempt(
        **_attempt(row).model_dump(),
        delivery=row["delivery_id"],
        event=row["event_uid"],
        action=row["action"],
    )


@OPERATIONS.operation(
    "POST",
    HOOK + "/deliveries/{delivery:int}/redeliver",
    summary="Send one delivery again (at the end of the webhook's queue)",
    access=webhook_access,
    response=Queued,
    status=202,
    errors=[404],
)
async def redeliver_one(request: Request, ident: int, delivery: int, caller: Endpoint) -> Queued:
    return Queued(queued=await registry_of(request).webhooks.redeliver(ident, delivery))


@OPERATIONS.operation(
    "POST",
    HOOK + "/redeliver",
    summary="Send every failed delivery of the webhook again",
    access=webhook_access,
    response=Queued,
    status=202,
    errors=[404],
)
async def redeliver_failed(request: Request, ident: int, caller: Endpoint) -> Queued:
    return Queued(queued=await registry_of(request).webhooks.redeliver(ident, None))


@OPERATIONS.operation(
    "POST",
    HOOK + "/test",
    summary="Send a ping event to the webhook now, and say how the receiver answered",
    access=webhook_access,
    response=Tested,
    errors=[404],
)
async def test_webhook(request: Request, ident: int, caller: Endpoint) -> Tested:
    sent = await registry_of(request).webhooks.test(ident)
    return Tested(ok=sent.ok, **dataclasses.asdict(sent))
