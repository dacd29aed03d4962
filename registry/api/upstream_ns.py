"""containerd's `?ns=HOST` on the requests it sends a mirror (hosts.toml; the
distribution-spec's registry proxying): the repository belongs to the registry HOST.

A mirror renames such a request to the repository of HOST's cache here, the name under
`mirror.upstreams[].prefix` (Docker Hub's, when it is the upstream without a prefix),
before any route, access check or cache lookup sees it. So the caches of two upstreams
never mix, the token scope a client is challenged for is the cache's name, and everything
that serves a repository honours `ns` alike. `ns` is a key into the configured upstreams,
never an address to dial: an unknown one is refused here.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from registry.api.errors import render
from registry.errors import NameUnknown
from registry.proxy.upstream import allowed_host


class UpstreamNamespace:
    def __init__(self, app: ASGIApp, *, hosts: dict[str, str], allowed: list[str]) -> None:
        self.app = app
        self.hosts = hosts
        # mirror.allow_hosts: a host they match is its own cache's prefix.
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One bytes search on the requests of clients that are not containerd.
        if scope["type"] == "http" and b"ns=" in scope["query_string"]:
            path: str = scope["path"]
            name = path[len("/v2/") :] if path.startswith("/v2/") else ""
            ns = _ns(scope["query_string"])
            if ns is not None and name and not name.startswith("_catalog"):
                prefix = self.hosts.get(ns.lower())
                if prefix is None and allowed_host(ns, self.allowed):
                    prefix = ns.lower()
                if prefix is None:
                    await render(self._unknown(ns))(scope, receive, send)
                    return
                # In place: the router notes the route in this scope for Observe, and
                # the access line shows the path as asked, with the ns that routed it.
                asked = scope.get("raw_path") or path.encode("latin-1")
                scope["raw_path"] = asked + b"?ns=" + ns.encode("latin-1")
                if prefix:
                    scope["path"] = f"/v2/{prefix}/{name}"
        await self.app(scope, receive, send)

    def _unknown(self, ns: str) -> NameUnknown:
        known = sorted(self.hosts)
        return NameUnknown(
            {"ns": ns, "upstreams": known},
            message=f"ns={ns}: this mirror has no upstream of that name; it mirrors "
            f"{', '.join(known)} (mirror.upstreams)"
            + (f" and hosts matching {', '.join(self.allowed)}" if self.allowed else ""),
        )


def _ns(query: bytes) -> str | None:
    for key, value in parse_qsl(query.decode("latin-1")):
        if key == "ns":
            return value
    return None
