"""Behind a reverse proxy: believe X-Forwarded-Proto, -Host and -For from trusted proxies
only, so that absolute URLs (the token realm, redirects) carry the address clients use,
and the login limit counts the real client, not the proxy.

uvicorn's own proxy-header support leaves out X-Forwarded-Host; this middleware does all
three, and it is off for every peer outside `http.trusted_proxies`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address

from starlette.types import ASGIApp, Receive, Scope, Send

Network = IPv4Network | IPv6Network


_FORWARDED = (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-for")
# Set in the scope of a request that came through a trusted proxy, whose other
# headers (X-Request-ID) are believed too (api/observe.py).
TRUSTED_PEER = "registry.trusted_peer"


class ForwardedHeaders:
    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)
        # Peers are few (the proxies), so their verdicts are kept.
        self._trusts = lru_cache(maxsize=1024)(self._check)

    def _check(self, address: str) -> bool:
        try:
            ip = ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client or not self._trusts(client[0]):
            await self.app(scope, receive, send)
            return
        scope = {**scope, TRUSTED_PEER: True}
        found = {k: v for k, v in scope["headers"] if k in _FORWARDED}
        if not found:
            await self.app(scope, receive, send)
            return
        proto = _first(found.get(b"x-forwarded-proto"))
        if proto in ("http", "https"):
            scope["scheme"] = proto
        host = _first(found.get(b"x-forwarded-host"))
        if host:
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"]
            scope["headers"].append((b"host", host.encode("latin-1")))
        chain = found.get(b"x-forwarded-for")
        if chain:
            # The nearest address not a trusted proxy is the client; proxies append.
            hops = [hop.strip() for hop in chain.decode("latin-1").split(",") if hop.strip()]
            for hop in reversed(hops):
                if not self._trusts(hop):
                    scope["client"] = (hop, 0)
                    break
            else:
                scope["client"] = (hops[0], 0)
        await self.app(scope, receive, send)


def _first(value: bytes | None) -> str:
    """The first of a comma-separated header (the one the outermost proxy set)."""
    if not value:
        return ""
    return value.decode("latin-1").split(",")[0].strip().lower()
