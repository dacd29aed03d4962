"""GET /v2/: the API version check; GET /health: for load balancers and healthchecks."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.common import API_VERSION_HEADER, registry_of


async def version_check(request: Request) -> JSONResponse:
    return JSONResponse({}, headers=API_VERSION_HEADER)


async def health(request: Request) -> JSONResponse:
    """200 when the database answers (503 UNAVAILABLE, from the database layer, when not).
    No auth: it tells nothing but that this process can serve."""
    await registry_of(request).db.ping()
    return JSONResponse({"status": "ok"})
