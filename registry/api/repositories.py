"""/api/v1/repositories: browse what the registry holds, and delete it.

- GET /api/v1/repositories lists those the caller may pull from, with sizes and pulls;
- GET .../<name>/-/tags lists a repository's tags with sizes, platforms and build times,
  by name or newest push first; GET .../<name>/-/untagged, the manifests no tag points
  at (what deleting tags left); GET .../<name>/-/manifests/<reference> shows one in full;
- DELETE on a repository, a tag or a manifest needs what a /v2/ delete needs
  (maintainers and up); garbage collection frees what nothing else references.

`/-/` separates a repository's name from what follows: no name component can be `-`.
Every operation on one repository is declared before the bare `{name:path}`, which
would match the longer paths too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, Literal, TypeVar

from pydantic import Field
from starlette.requests import Request

from registry.api.access import authorize, caller_identity, require_repository
from registry.api.declare import Answer, Operations, Page, PageQuery
from registry.auth.scopes import DELETE, PULL
from registry.digest import Digest
from registry.paging import fetch
from registry.requests import registry_of

OPERATIONS = Operations(tag="repositories")

M = TypeVar("M", bound=Answer)
REPOSITORY = "/api/v1/repositories/{name:path}"
TAGS = REPOSITORY + "/-/tags"
TAG = REPOSITORY + "/-/tags/{tag}"
UNTAGGED = REPOSITORY + "/-/untagged"
MANIFEST = REPOSITORY + "/-/manifests/{reference}"


async def puller(request: Request, name: str, **_: str) -> str:
    """Who may pull from the repository (as on /v2/); the name, checked."""
    return await require_repository(request, name, PULL)


async def deleter(request: Request, name: str, **_: str) -> str:
    """Who may delete in the repository, as on /v2/ (maintainers and up)."""
    return await require_repository(request, name, DELETE)


class PlatformModel(Answer):
    os: str | None
    architecture: str | None
    variant: str | None


class PlatformImageModel(Answer):
    digest: str = Field(description="the platform's image (empty for an image's own)")
    platform: PlatformModel | None
    bytes: int


def _name(item: RepositorySummary | TagSummary) -> str:
    return item.name


def _digest(item: UntaggedSummary) -> str:
    return item.digest


def _from(model: type[M], found: object) -> M:
    """An answer from a service's dataclass, field by field (nested ones too)."""
    return model.model_validate(found, from_attributes=True)


async def _signed(
    request: Request, repository: str, model: type[M], found: Sequence[Any]
) -> Callable[[Any], M]:
    """`_from` for images, with the trusted keys that signed each (one query for all)."""
    signers = await registry_of(request).trust.signed_in(repository, [f.digest for f in found])

    def answer(item: Any) -> M:
        return _from(model, item).model_copy(update={"signed_by": signers.get(item.digest, [])})

    return answer


class RepositorySummary(Answer):
    name: str
    namespace: str
    tags: int
    bytes: int = Field(
        description="of what its manifests reference, and of the manifests, each blob once"
    )
    pushed_at: datetime | None
    pulls: int = Field(description="manifest GETs, counted every few seconds")
    pulled_at: datetime | None


class RepositoriesQuery(PageQuery):
    q: str | None = Field(None, max_length=255, description="names containing this")
    sort: Literal["name", "pushed", "pulls"] = Field(
        "name", description="pushed: newest push first; pulls: most pulled first"
    )


class ImageSummary(Answer):
    """What a tag's or an untagged manifest's row shows of its image."""

    digest: str
    media_type: str
    artifact_type: str | None
    bytes: int = Field(description="config and layers; for an index, of every platform")
    platforms: list[PlatformImageModel]
    created: str | None = Field(description="when the image was built, from its config")
    pushed_at: datetime
    pulled_at: datetime | None
    signed_by: list[str] = Field(
        default_factory=list, description="the trusted keys whose signatures of it verified"
    )


class TagSummary(ImageSummary):
    name: str


class UntaggedSummary(ImageSummary):
    untagged_at: datetime = Field(description="since when no tag has pointed at it")
    referrers: int = Field(description="signatures, SBOMs, attestations: they go with it")


class TagsQuery(PageQuery):
    sort: Literal["name", "pushed"] = Field("name", description="pushed: newest first")


class LayerModel(Answer):
    digest: str
    media_type: str
    size: int


class HistoryModel(Answer):
    created: str | None
    created_by: str | None
    empty_layer: bool


class ConfigModel(Answer):
    created: str | None
    platform: PlatformModel | None
    entrypoint: list[str] | None
    cmd: list[str] | None
    env: list[str] = Field(description="the names of the variables (values are not shown)")
    labels: dict[str, str]
    history: list[HistoryModel]


class ReferrerModel(Answer):
    digest: str
    media_type: str
    artifact_type: str | None
    bytes: int


class ManifestDetail(Answer):
    digest: str
    media_type: str
    artifact_type: str | None
    bytes: int = Field(description="of the manifest itself")
    document: Any = Field(description="the manifest's JSON")
    config_descriptor: LayerModel | None
    config: ConfigModel | None
    layers: list[LayerModel]
    platforms: list[PlatformImageModel] = Field(description="an index's children")
    referrers: list[ReferrerModel] = Field(description="signatures, SBOMs, attestations")
    pushed_at: datetime | None
    pulled_at: datetime | None
    signed_by: list[str] = Field(
        default_factory=list, description="the trusted keys whose signatures of it verified"
    )


class DeletedRepository(Answer):
    repository: str
    tags: int
    manifests: int


@OPERATIONS.operation(
    "GET",
    "/api/v1/repositories",
    summary="Repositories the caller may pull from, by name, newest push or pulls",
    response=RepositorySummary,
    query=RepositoriesQuery,
    paged="repositories",
)
async def list_repositories(request: Request, query: RepositoriesQuery) -> Page[RepositorySummary]:
    registry = registry_of(request)
    await authorize(request, None)
    readable = None
    if registry.auth is not None:
        identity = await caller_identity(request)
        readable = await registry.auth.accounts.readable_namespaces(identity)
    found = await fetch(
        lambda n: registry.browse.repositories(readable, query.q, query.last, n, query.sort),
        query.size,
    )
    return Page.window(found, partial(_from, RepositorySummary), _name, query.size)


@OPERATIONS.operation(
    "GET",
    TAGS,
    summary="A repository's tags with sizes, platforms and build times",
    access=puller,
    response=TagSummary,
    query=TagsQuery,
    paged="tags",
    errors=[404],
)
async def list_tags(request: Request, name: str, caller: str, query: TagsQuery) -> Page[TagSummary]:
    browse = registry_of(request).browse
    found = await fetch(
        lambda n: browse.tags(caller, by_push=query.sort == "pushed", last=query.last, limit=n),
        query.size,
    )
    return Page.window(
        found, await _signed(request, caller, TagSummary, found.items), _name, query.size
    )


@OPERATIONS.operation(
    "GET",
    UNTAGGED,
    summary="A repository's untagged manifests, newest first: what deleting tags left, "
    "kept until deleted (DELETE .../-/manifests/<digest>) or gc.untagged_hours",
    access=puller,
    response=UntaggedSummary,
    query=PageQuery,
    paged="manifests",
    errors=[404],
)
async def list_untagged(
    request: Request, name: str, caller: str, query: PageQuery
) -> Page[UntaggedSummary]:
    browse = registry_of(request).browse
    found = await fetch(lambda n: browse.untagged(caller, query.last, n), query.size)
    summary = await _signed(request, caller, UntaggedSummary, found.items)
    return Page.window(found, summary, _digest, query.size)


@OPERATIONS.operation(
    "GET",
    MANIFEST,
    summary="One manifest: its JSON, layers, config, platforms and referrers",
    access=puller,
    response=ManifestDetail,
    errors=[404],
)
async def get_manifest(request: Request, name: str, reference: str, caller: str) -> ManifestDetail:
    found = await registry_of(request).browse.manifest(caller, reference)
    return (await _signed(request, caller, ManifestDetail, [found]))(found)


@OPERATIONS.operation(
    "DELETE",
    TAG,
    summary="Delete a tag (maintainers); its manifest stays",
    access=deleter,
    errors=[404, 409],
)
async def delete_tag(request: Request, name: str, tag: str, caller: str) -> None:
    await registry_of(request).manifests.delete(caller, tag)


@OPERATIONS.operation(
    "DELETE",
    MANIFEST,
    summary="Delete a manifest by digest and the tags that point at it (maintainers)",
    access=deleter,
    errors=[404, 409],
)
async def delete_manifest(request: Request, name: str, reference: str, caller: str) -> None:
    await registry_of(request).manifests.delete(caller, str(Digest.parse(reference)))


@OPERATIONS.operation(
    "DELETE",
    REPOSITORY,
    summary="Delete a repository (maintainers); garbage collection frees its blobs",
    access=deleter,
    response=DeletedRepository,
    status=202,
    errors=[404, 409],
)
async def delete_repository(request: Request, name: str, caller: str) -> DeletedRepository:
    deleted = await registry_of(request).manifests.delete_repository(caller)
    return DeletedRepository(repository=caller, tags=deleted.tags, manifests=deleted.manifests)
