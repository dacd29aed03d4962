"""X-Forwarded-* are believed from trusted proxies only, and give the scheme, host and
client address that URLs and login limits use."""

from __future__ import annotations

from ipaddress import ip_network

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from registry.api.forwarded import ForwardedHeaders

pytestmark = pytest.mark.anyio


async def echo(request: Request) -> JSONResponse:
    client = request.client.host if request.client else None
    return JSONResponse({"base": str(request.base_url), "client": client})


APP = ForwardedHeaders(
    Starlette(routes=[Route("/", echo)]),
    [ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8")],
)


async def seen(peer: str, headers: dict[str, str]) -> dict[str, str]:
    transport = httpx.ASGITransport(app=APP, client=(peer, 4321))
    async with httpx.AsyncClient(transport=transport, base_url="http://internal:5000") as c:
        return dict((await c.get("/", headers=headers)).json())


FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "registry.example.com",
    "X-Forwarded-For": "203.0.113.7",
}


async def test_a_trusted_proxy_sets_scheme_host_and_client() -> None:
    assert await seen("127.0.0.1", FORWARDED) == {
        "base": "https://registry.example.com/",
        "client": "203.0.113.7",
    }


async def test_anyone_else_is_not_believed() -> None:
    assert await seen("198.51.100.1", FORWARDED) == {
        "base": "http://internal:5000/",
        "client": "198.51.100.1",
    }


async def test_the_client_is_the_nearest_untrusted_hop() -> None:
    # The client made up the first hop; the proxies appended the rest.
    chain = {"X-Forwarded-For": "1.2.3.4, 203.0.113.7, 10.0.0.5"}
    assert (await seen("127.0.0.1", chain))["client"] == "203.0.113.7"
    assert (await seen("127.0.0.1", {"X-Forwarded-For": "10.0.0.5"}))["client"] == "10.0.0.5"


async def test_junk_is_ignored() -> None:
    junk = {"X-Forwarded-Proto": "gopher", "X-Forwarded-Host": ""}
    assert (await seen("127.0.0.1", junk))["base"] == "http://internal:5000/"
