"""GET /v2/: the API version check. GET /health: the process is up (liveness). GET
/ready: it can serve (readiness): the database answers at the schema this code knows,
and the blob store is reachable and writable. Neither needs credentials; they tell
nothing but that."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.requests import registry_of


async def version_check(request: Request) -> JSONResponse:
    return JSONResponse({})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> JSONResponse:
    """200 when ready; else 503 UNAVAILABLE saying which part is not."""
    at = await registry_of(request).readiness.check()
    return JSONResponse({"status": "ready", "schema": at})
