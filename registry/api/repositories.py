"""/api/v1/repositories/<name>: DELETE removes a repository's tags, manifests and links,
with the permission a manifest DELETE on /v2/ needs; garbage collection frees what
nothing else references."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.common import registry_of, repository


async def delete_repository(request: Request) -> JSONResponse:
    name = repository(request)
    deleted = await registry_of(request).manifests.delete_repository(name)
    return JSONResponse(
        {"repository": name, "tags": deleted.tags, "manifests": deleted.manifests},
        status_code=202,
    )
