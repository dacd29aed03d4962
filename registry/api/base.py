"""GET /v2/: the API version check. GET /health: the process is up (liveness). GET
/ready: it can serve (readiness): the database answers at the schema this code knows,
and the blob store is reachable and writable. Neither needs credentials; they tell
nothing but that."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.common import API_VERSION_HEADER, registry_of
from registry.errors import Unavailable
from registry.metadata import migrate
from registry.storage.base import StorageError


async def version_check(request: Request) -> JSONResponse:
    return JSONResponse({}, headers=API_VERSION_HEADER)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> JSONResponse:
    """200 when ready; else 503 UNAVAILABLE saying which part is not."""
    registry = registry_of(request)
    async with registry.db.read() as conn:  # 503 from the database layer when it is down
        at = await migrate.revision(conn)
    if migrate.behind(at):
        raise Unavailable(
            {"database": at, "expected": migrate.head()},
            message=f"the database schema is at {at or 'nothing'}, this registry needs "
            f"{migrate.head()}: run `registry migrate` (serve does it at start)",
        )
    try:
        await registry.store.check()
    except StorageError as exc:
        raise Unavailable(
            {"storage": registry.settings.storage.driver},
            message=f"blob store not ready: {exc}",
        ) from exc
    return JSONResponse({"status": "ready", "schema": at})
