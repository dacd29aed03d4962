"""Whether a URL's host is the registry's own network: loopback, private, link-local (a
cloud's metadata service). Namespace owners may not point webhooks or replication
remotes there, so that the registry cannot be made to reach what only it can reach."""

from __future__ import annotations

import asyncio
import ipaddress


def private_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


async def resolves_private(host: str, port: int) -> str | None:
    """The first address of `host` that is not public, if any."""
    if private_address(host):
        return host
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port)
    except OSError:
        return None  # the attempt itself reports it
    return next((str(a[4][0]) for a in found if private_address(str(a[4][0]))), None)
