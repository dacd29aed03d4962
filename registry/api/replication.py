"""/api/v1/replication: rules that copy between this registry and its remotes, their
runs and each run's items. Admins keep the registry's rules (/api/v1/replication/...);
a namespace's owners keep its own (/api/v1/namespaces/<ns>/replication/...), which
copy only the namespace's repositories (push) or into it (pull), through its remotes.
Every operation is declared once and served at both places."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request

from registry.api.accounts import registry_and_namespace
from registry.api.declare import Answer, Body, Operations, Page, PageQuery, id_key
from registry.errors import Invalid
from registry.paging import fetch
from registry.replication.filters import KINDS
from registry.replication.rules import ItemRow, RuleRow, RuleSpec, RunRow
from registry.requests import registry_of

OPERATIONS = Operations(tag="replication")
_both = partial(registry_and_namespace, OPERATIONS, "replication")

Direction = Literal["push", "pull"]
Trigger = Literal["manual", "schedule", "event"]
ItemState = Literal["pending", "running", "copied", "skipped", "failed"]


class NewRule(Body):
    name: str
    direction: Direction = Field(description="push: here to the remote; pull: the remote to here")
    remote: str = Field(description="a remote of the namespace (or the registry's)")
    repositories: list[str] = Field(
        [],
        description="globs of repository names at the source (* ** ? {a,b}); `!` excludes; "
        "none: every one",
    )
    tags: list[str] = Field([], description="globs of tags, as repositories; none: every tag")
    kinds: list[str] = Field(list(KINDS), description="of image, index, artifact")
    destination: str = Field(
        "", description="a path put in front of each name at the destination; empty: none"
    )
    strip: int = Field(0, description="leading components of each name dropped first")
    overwrite: bool = Field(True, description="move a tag the destination has elsewhere")
    deletions: bool = Field(False, description="delete at the destination what goes here")
    trigger: Trigger = "manual"
    schedule: str | None = Field(None, description="cron, 5 fields, UTC (trigger: schedule)")
    bandwidth: int = Field(0, description="bytes per second over the rule's copies; 0: any")
    blobs_at_once: int = Field(4, description="blobs of one image copied at once")
    enabled: bool = True
    signed_only: bool = Field(
        False,
        description="copy only images that a key trusted here signed (cosign): the source "
        "namespace's keys for a push rule, the destination's for a pull rule",
    )


class RuleChange(Body):
    direction: Direction | None = None
    remote: str | None = None
    repositories: list[str] | None = None
    tags: list[str] | None = None
    kinds: list[str] | None = None
    destination: str | None = None
    strip: int | None = None
    overwrite: bool | None = None
    deletions: bool | None = None
    trigger: Trigger | None = None
    schedule: str | None = None
    bandwidth: int | None = None
    blobs_at_once: int | None = None
    enabled: bool | None = None
    signed_only: bool | None = None


class Rule(Answer):
    namespace: str = Field(description="empty: the registry's")
    name: str
    direction: str
    remote: str
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
    signed_only: bool
    created_at: datetime
    created_by: str


class Counts(Answer):
    pending: int = 0
    running: int = 0
    copied: int = 0
    skipped: int = 0
    failed: int = 0


class Run(Answer):
    id: int
    rule: str
    trigger: str = Field(description="manual, schedule, event or retry")
    state: str = Field(description="planning, running, succeeded or failed")
    created_at: datetime
    created_by: str
    finished_at: datetime | None
    error: str | None = Field(description="why listing what the rule selects failed")
    items: Counts
    bytes: int = Field(description="bytes copied")


class Item(Answer):
    id: int
    action: str = Field(description="copy or delete")
    repository: str = Field(description="at the source")
    reference: str = Field(description="a tag or a digest")
    destination: str = Field(description="the repository at the destination")
    state: str
    attempts: int
    digest: str | None
    bytes: int
    error: str | None = Field(description="why it failed (or was skipped), in words")
    created_at: datetime
    finished_at: datetime | None


class Started(Answer):
    run: int


class RunQuery(PageQuery):
    rule: str | None = None


class ItemQuery(PageQuery):
    state: ItemState | None = None


def _rule(row: RuleRow) -> Rule:
    return Rule(**{k: getattr(row, k) for k in Rule.model_fields})


def _run(row: RunRow, names: dict[int, str]) -> Run:
    return Run(
        id=row.id,
        rule=names.get(row.rule_id, ""),
        trigger=row.trigger,
        state=row.state,
        created_at=row.created_at,
        created_by=row.created_by,
        finished_at=row.finished_at,
        error=row.error,
        items=Counts(**row.counts),
        bytes=row.bytes,
    )


def _item(row: ItemRow) -> Item:
    return Item(**{k: getattr(row, k) for k in Item.model_fields})


@_both(
    "GET",
    "/rules",
    summary="List replication rules",
    response=Rule,
    query=PageQuery,
    paged="rules",
)
async def list_rules(request: Request, namespace: str, caller: Any, query: PageQuery) -> Page[Rule]:
    listed = [_rule(r) for r in await registry_of(request).replication.listed(namespace)]
    return Page.of(listed, lambda r: r.name, query)


@_both(
    "POST",
    "/rules",
    summary="Add a replication rule",
    response=Rule,
    status=201,
    body=NewRule,
    errors=(409,),
)
async def add_rule(request: Request, namespace: str, caller: Any, body: NewRule) -> Rule:
    """400 says what is wrong: a filter, the schedule, the remote, the destination."""
    spec = RuleSpec(**body.model_dump())
    return _rule(await registry_of(request).replication.add(namespace, spec))


@_both("GET", "/rules/{rule}", summary="A replication rule", response=Rule, errors=(404,))
async def get_rule(request: Request, namespace: str, caller: Any, rule: str) -> Rule:
    return _rule(await registry_of(request).replication.get(namespace, rule))


@_both(
    "PATCH",
    "/rules/{rule}",
    summary="Change a replication rule",
    response=Rule,
    body=RuleChange,
    errors=(404,),
)
async def change_rule(
    request: Request, namespace: str, caller: Any, rule: str, body: RuleChange
) -> Rule:
    changes = body.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if value is None and key != "schedule":
            raise Invalid({key: None}, message=f"{key}: may not be null")
    return _rule(await registry_of(request).replication.change(namespace, rule, changes))


@_both("DELETE", "/rules/{rule}", summary="Remove a replication rule, with its history")
async def remove_rule(request: Request, namespace: str, caller: Any, rule: str) -> None:
    await registry_of(request).replication.remove(namespace, rule)


@_both(
    "POST",
    "/rules/{rule}/run",
    summary="Run a replication rule now",
    response=Started,
    status=202,
    errors=(404, 409),
)
async def run_rule(request: Request, namespace: str, caller: Any, rule: str) -> Started:
    """409 while a run of the rule is going on: one run at a time."""
    return Started(run=await registry_of(request).replication.run_now(namespace, rule))


@_both(
    "GET",
    "/runs",
    summary="Replication runs, newest first",
    response=Run,
    query=RunQuery,
    paged="runs",
)
async def list_runs(request: Request, namespace: str, caller: Any, query: RunQuery) -> Page[Run]:
    rules = registry_of(request).replication
    names = await rules.rule_names(namespace)
    found = await fetch(
        lambda n: rules.runs(namespace, query.rule, id_key(query.last), n), query.size
    )
    return Page.window(found, lambda row: _run(row, names), lambda r: str(r.id), query.size)


@_both("GET", "/runs/{run:int}", summary="A replication run", response=Run, errors=(404,))
async def get_run(request: Request, namespace: str, caller: Any, run: int) -> Run:
    rules = registry_of(request).replication
    return _run(await rules.run(namespace, run), await rules.rule_names(namespace))


@_both(
    "GET",
    "/runs/{run:int}/items",
    summary="A replication run's items, newest first",
    response=Item,
    query=ItemQuery,
    paged="items",
    errors=(404,),
)
async def list_items(
    request: Request, namespace: str, caller: Any, run: int, query: ItemQuery
) -> Page[Item]:
    rules = registry_of(request).replication
    found = await fetch(
        lambda n: rules.items(namespace, run, query.state, id_key(query.last), n), query.size
    )
    return Page.window(found, _item, lambda i: str(i.id), query.size)


@_both(
    "POST",
    "/runs/{run:int}/retry",
    summary="Queue a run's failed items again",
    response=Started,
    status=202,
    errors=(404, 409),
)
async def retry_run(request: Request, namespace: str, caller: Any, run: int) -> Started:
    """Into the rule's run going on, or a new one (trigger: retry)."""
    return Started(run=await registry_of(request).replication.retry(namespace, run))
