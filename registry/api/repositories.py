"""/api/v1/repositories/<name>: DELETE removes a repository's tags, manifests and links,
with the permission a manifest DELETE on /v2/ needs; garbage collection frees what
nothing else references."""

from __future__ import annotations

from starlette.requests import Request

from registry.api.access import require_repository
from registry.api.common import registry_of
from registry.api.declare import API, Answer
from registry.auth.scopes import DELETE


async def deleter(request: Request, name: str) -> str:
    """Who may delete in the repository, as on /v2/ (maintainers and up)."""
    return await require_repository(request, name, DELETE)


class DeletedRepository(Answer):
    repository: str
    tags: int
    manifests: int


@API.operation(
    "DELETE",
    "/api/v1/repositories/{name:path}",
    summary="Delete a repository (maintainers); garbage collection frees its blobs",
    tag="repositories",
    access=deleter,
    response=DeletedRepository,
    status=202,
    errors=[404, 409],
)
async def delete_repository(request: Request, name: str, caller: str) -> DeletedRepository:
    deleted = await registry_of(request).manifests.delete_repository(caller)
    return DeletedRepository(repository=caller, tags=deleted.tags, manifests=deleted.manifests)
