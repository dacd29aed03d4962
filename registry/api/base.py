"""GET /v2/: the API version check."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.common import API_VERSION_HEADER


async def version_check(request: Request) -> JSONResponse:
    return JSONResponse({}, headers=API_VERSION_HEADER)
