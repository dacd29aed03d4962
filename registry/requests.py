"""What the HTTP layers (api/ and web/) share about a request: the registry that serves
it, the client's address, and a small body read within a bound."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

from registry.parse import content_length

if TYPE_CHECKING:
    from registry.wiring import Registry


def registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def small_body(request: Request, limit: int) -> bytes | None:
    """The whole body of a request that should be small (a form, a JSON document), or None
    if it is larger than `limit` bytes; reading stops there."""
    length = content_length(request.headers)
    if length is not None and length > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
