"""GET /v2/<name>/tags/list and GET /v2/_catalog, paginated with n, last and Link."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.access import caller_identity
from registry.api.common import next_link, page_params, repository
from registry.paging import Window
from registry.requests import registry_of


def _paged(
    request: Request, body: dict[str, object], page: Window[str], limit: int | None
) -> JSONResponse:
    headers: dict[str, str] = {}
    if page.more:
        headers["Link"] = next_link(request.url.path, limit, page.items[-1])
    return JSONResponse(body, headers=headers)


async def tags_list(request: Request) -> JSONResponse:
    name = repository(request)
    limit, last = page_params(request)
    page = await registry_of(request).listing.tags(name, limit, last)
    return _paged(request, {"name": name, "tags": page.items}, page, limit)


async def catalog(request: Request) -> JSONResponse:
    limit, last = page_params(request)
    registry = registry_of(request)
    namespaces = None
    if registry.auth is not None:
        identity = await caller_identity(request)
        namespaces = await registry.auth.accounts.readable_namespaces(identity)
    page = await registry.listing.catalog(limit, last, namespaces)
    return _paged(request, {"repositories": page.items}, page, limit)
