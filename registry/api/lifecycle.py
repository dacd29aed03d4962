"""The storage lifecycle's /api/v1/ endpoints: a namespace's policy (immutable-tag rules,
retention, quota; GET and PATCH), usage (of the registry for admins, of a namespace for
its owners and admins) and garbage collection's state (admins). With authentication on,
only admins set quotas or lift immutable rules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import Field
from starlette.requests import Request

from registry.api.access import require_admin, require_owner
from registry.api.declare import Answer, Body, Operations
from registry.names import check_namespace
from registry.requests import registry_of

OPERATIONS = Operations(tag="lifecycle")

POLICY = "/api/v1/namespaces/{namespace}/policy"


async def namespace_owner(request: Request, namespace: str) -> bool:
    """The access of a namespace's lifecycle: its owners, and admins (True)."""
    return await require_owner(request, check_namespace(namespace))


def admins(what: str) -> Callable[[Request], Awaitable[None]]:
    async def access(request: Request) -> None:
        await require_admin(request, what)

    return access


class Retention(Answer):
    keep_last: int | None = Field(description="keep this many tags pushed last")
    keep_tags: list[str] = Field(description="tag patterns retention never deletes")
    older_than_days: float | None = Field(description="delete only tags pushed before")


class Policy(Answer):
    namespace: str
    immutable_tags: list[str] = Field(description="tag patterns no push may move")
    retention: Retention | None
    quota_bytes: int | None
    signature_policy: str = Field(
        description="off, audit (unsigned pulls served and recorded) or enforce (refused)"
    )


class RetentionChange(Body):
    keep_last: int | None = Field(None, ge=0)
    keep_tags: list[str] = Field(default_factory=list)
    older_than_days: float | None = Field(None, gt=0)


class PolicyChange(Body):
    """The fields to change; one left out stays as it is."""

    immutable_tags: list[str] | None = Field(None, description="lifting one takes an admin")
    retention: RetentionChange | None = None
    quota_bytes: int | None = Field(None, ge=0, description="only admins set it")
    signature_policy: Literal["off", "audit", "enforce"] | None = Field(
        None, description="pulls of images no trusted key signed: served, recorded, refused"
    )


class RepositoryUsage(Answer):
    name: str
    bytes: int
    shared_bytes: int = Field(description="bytes of blobs another repository links too")


class NamespaceUsage(Answer):
    namespace: str
    bytes: int = Field(description="each blob once, however many repositories link it")
    quota_bytes: int | None
    reclaimable_bytes: int = Field(description="what a collection pass would free now")
    uploads: int = Field(description="upload sessions in progress")
    repositories: list[RepositoryUsage]


class NamespaceTotal(Answer):
    namespace: str
    bytes: int
    repositories: int


class Usage(Answer):
    namespaces: list[NamespaceTotal]
    stored_bytes: int
    reclaimable_bytes: int
    uploads: int


class GcSettings(Answer):
    blob_lease_seconds: float
    interval_seconds: float
    untagged_hours: float
    upload_ttl_hours: float
    retention_interval_seconds: float


class GcQueue(Answer):
    blobs: int = Field(description="queued for a look, due or not")
    due: int
    reclaimable_bytes: int
    tombstones: int = Field(description="blobs whose bytes a pass is deleting")


class Held(Answer):
    blobs: int
    bytes: int


class Leased(Held):
    until: str | None = Field(description="when the last of their leases ends")


class HeldByUntagged(Answer):
    manifests: int
    bytes: int = Field(description="what deleting them all would free")
    since: str | None = Field(description="when the oldest lost its last tag")
    first_due: str | None = Field(
        description="when gc.untagged_hours deletes the first (null: it is 0, never)"
    )


class GcWaiting(Answer):
    held_until: str | None
    due: Held = Field(description="unreferenced, unleased: the next pass deletes them")
    leased: Leased = Field(description="unreferenced, kept by a lease from a recent push")
    untagged: HeldByUntagged = Field(description="referenced only by untagged manifests")


class GcRun(Answer):
    started_at: str
    seconds: float
    worker: str
    blobs_deleted: int
    bytes_freed: int
    manifests_deleted: int
    uploads_ended: int
    postponed: int
    error: str | None


class GcStatus(Answer):
    held_until: str | None = Field(
        description="no pass deletes a blob until then (`registry gc hold`, for a backup)"
    )
    settings: GcSettings
    queue: GcQueue
    waiting: GcWaiting = Field(description="stored bytes nothing needs, by what they wait for")
    totals: dict[str, int] = Field(description="counters over every process")
    runs: list[GcRun] = Field(description="the last runs that did something, newest first")


@OPERATIONS.operation(
    "GET",
    POLICY,
    summary="A namespace's policy (owners)",
    access=namespace_owner,
    response=Policy,
    errors=[404],
)
async def get_policy(request: Request, namespace: str, caller: bool) -> Policy:
    found = await registry_of(request).policies.get(namespace)
    return Policy.model_validate(found.to_json())


@OPERATIONS.operation(
    "PATCH",
    POLICY,
    summary="Change a namespace's policy (owners; the quota and lifting immutable rules: admins)",
    access=namespace_owner,
    response=Policy,
    body=PolicyChange,
    errors=[404],
)
async def change_policy(
    request: Request, namespace: str, caller: bool, body: PolicyChange
) -> Policy:
    changes = body.model_dump(exclude_unset=True)
    found = await registry_of(request).policies.update(namespace, changes, admin=caller)
    return Policy.model_validate(found.to_json())


@OPERATIONS.operation(
    "GET",
    "/api/v1/namespaces/{namespace}/usage",
    summary="A namespace's usage (owners)",
    access=namespace_owner,
    response=NamespaceUsage,
    errors=[404],
)
async def namespace_usage(request: Request, namespace: str, caller: bool) -> NamespaceUsage:
    found = await registry_of(request).usage.namespace(namespace)
    return NamespaceUsage.model_validate(found)


@OPERATIONS.operation(
    "GET",
    "/api/v1/usage",
    summary="The registry's usage (admins)",
    access=admins("read the registry's usage"),
    response=Usage,
)
async def usage(request: Request, caller: None) -> Usage:
    return Usage.model_validate(await registry_of(request).usage.overall())


@OPERATIONS.operation(
    "GET",
    "/api/v1/gc",
    summary="Garbage collection's state (admins)",
    access=admins("read garbage collection's state"),
    response=GcStatus,
)
async def gc_status(request: Request, caller: None) -> GcStatus:
    return GcStatus.model_validate(await registry_of(request).gc.status())
