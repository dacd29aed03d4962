"""Helpers every handler uses: path parameters, body streams, pagination, the Link header."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request

from registry.digest import Digest
from registry.errors import Invalid, PaginationInvalid
from registry.names import check_name
from registry.parse import decimal, json_document
from registry.proxy.mirror import Mirrored
from registry.requests import registry_of, small_body

if TYPE_CHECKING:
    from registry.services.sources import Source


def source(request: Request) -> Source:
    """Where a pull of the repository is answered from, as the gate found it: the mirror's
    upstream for a mirrored repository, this registry's own otherwise."""
    registry = registry_of(request)
    route = getattr(request.state, "mirror", None)
    if route is None or registry.mirror is None:
        return registry.stored
    return Mirrored(registry.mirror, route)


def repository(request: Request) -> str:
    return check_name(request.path_params["name"])


def digest_param(request: Request, key: str = "digest") -> Digest:
    return Digest.parse(request.path_params[key])


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in request.headers


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def json_object(request: Request, limit: int) -> dict[str, Any]:
    """A small JSON object body (the /api/v1/ requests), or 400 INVALID saying why not;
    an empty body is an empty object."""
    raw = await small_body(request, limit)
    if raw is None:
        raise Invalid(message=f"the request body is larger than {limit} bytes")
    try:
        body = json_document(raw or b"{}", registry_of(request).settings.limits.json_depth)
    except ValueError as exc:
        raise Invalid(message=f"the request body is rejected: {exc}") from None
    if not isinstance(body, dict):
        raise Invalid(message="the request body must be a JSON object")
    return body


def page_params(request: Request) -> tuple[int | None, str | None]:
    raw = request.query_params.get("n")
    limit = None
    if raw is not None:
        limit = decimal(raw)
        if limit is None:
            raise PaginationInvalid(
                {"n": raw[:50]},
                message=f"n must be a whole number of at most 20 digits, got {raw[:50]!r}",
            )
    return limit, request.query_params.get("last") or None


def next_link(path: str, limit: int | None, last: str) -> str:
    query = {"n": limit, "last": last} if limit is not None else {"last": last}
    return f'<{path}?{urlencode(query)}>; rel="next"'
