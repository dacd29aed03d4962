"""Render every error in the spec's format: {"errors": [{"code", "message", "detail"}]}."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.errors import (
    InsufficientStorage,
    RegistryError,
    RouteUnknown,
    Unavailable,
    Unsupported,
)
from registry.storage.base import StorageError, StorageFull

log = logging.getLogger("registry.api")


def render(error: RegistryError) -> JSONResponse:
    headers = dict(error.headers)
    return JSONResponse({"errors": [error.to_dict()]}, status_code=error.status, headers=headers)


async def registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    if exc.status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.text)
    return render(exc)


async def storage_error(request: Request, exc: Exception) -> Response:
    """The blob store failed (S3 unreachable or erroring, a disk error, no room): nothing
    half-done became visible, and the client may retry."""
    log.error("%s %s failed in blob storage: %s", request.method, request.url.path, exc)
    if isinstance(exc, StorageFull):
        return render(
            InsufficientStorage(
                message=f"the blob store is full ({exc}); nothing stored was lost, and an "
                "upload can be resumed once the operator frees space"
            )
        )
    return render(
        Unavailable(message=f"blob storage failed ({exc}); retry, or check the storage backend")
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return render(Unsupported(message=f"{request.method} is not supported on this endpoint"))
    return render(RouteUnknown(message=f"no endpoint at {request.url.path[:200]}"))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed unexpectedly", request.method, request.url.path)
    error = RegistryError(message="internal error; the registry log has the details")
    return render(error)


HANDLERS = {
    RegistryError: registry_error,
    StorageError: storage_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
