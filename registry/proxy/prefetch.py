"""Pre-warming the mirror's cache ahead of a rollout: `registry mirror prefetch REF...` and
POST /api/v1/mirror/prefetch fetch an image (every platform of an index, or the ones
asked for) with its config and layers, as a pull through the mirror would, and count it
as pulled so expiry keeps it.

A reference is written as a node would pull it: `ghcr.io/org/app:v1`, `docker.io/nginx`,
`nginx@sha256:...`, or under a prefix (`ghcr.io/org/app` with the prefix `ghcr.io`). Its
registry host is looked up among the upstreams, as containerd's `ns` is, so it lands in
the cache the nodes will read; a name without a host is the prefix routing's, and a
single one is an official image's, as Docker reads it (`busybox` is `library/busybox`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from registry.digest import Digest
from registry.errors import ManifestUnknown, NameInvalid, NameUnknown
from registry.images import Child, Layer, contents
from registry.mediatypes import MANIFEST_TYPES
from registry.names import check_name, check_tag
from registry.proxy.mirror import Mirror, MirrorRoute
from registry.proxy.upstream import DOCKER_HUB_HOSTS, allowed_host, hosts_of
from registry.services.pulls import Pulls

ACCEPT = sorted(MANIFEST_TYPES)
Report = Callable[[str], None]


@dataclass
class Prefetched:
    """What one reference brought into the cache."""

    reference: str
    repository: str = ""  # the cache's name for it
    digest: str = ""
    manifests: int = 0
    blobs: int = 0
    fetched_bytes: int = 0  # fetched from the upstream now
    cached_bytes: int = 0  # in the cache already
    platforms: list[str] = field(default_factory=list)


def platform_name(child: Child) -> str:
    p = child.platform
    if p is None:
        return "unknown"
    return "/".join(x for x in (p.os or "unknown", p.architecture or "unknown", p.variant) if x)


def check_platform(text: str) -> str:
    parts = text.split("/")
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise NameInvalid(
            {"platform": text}, message=f"platform {text!r}: expected os/arch or os/arch/variant"
        )
    return text


class Prefetcher:
    def __init__(self, mirror: Mirror, pulls: Pulls) -> None:
        self.mirror = mirror
        self.pulls = pulls
        self.hosts = hosts_of(mirror.settings.upstreams)
        self.hub_prefixes = {
            prefix for host, prefix in self.hosts.items() if host in DOCKER_HUB_HOSTS
        }

    async def resolve(self, reference: str) -> tuple[MirrorRoute, str, str]:
        """The upstream, the cache's repository name and the tag or digest of a reference."""
        path, at, digest = reference.partition("@")
        if at:
            wanted = str(Digest.parse(digest))  # DIGEST_INVALID if it is not one
        else:
            slash, colon = path.rfind("/"), path.rfind(":")
            path, wanted = (path[:colon], path[colon + 1 :]) if colon > slash else (path, "latest")
            check_tag(wanted)
        first, _, rest = path.partition("/")
        named_host = bool(rest) and ("." in first or ":" in first or first == "localhost")
        if named_host:
            prefix = self.hosts.get(first.lower())
            if prefix is None and allowed_host(first, self.mirror.allowed):
                prefix = first.lower()
            if prefix is None:
                raise NameUnknown(
                    {"reference": reference},
                    message=f"{first}: this mirror has no upstream of that host; it mirrors "
                    f"{', '.join(sorted(self.hosts))} (mirror.upstreams)",
                )
        else:
            prefix = first if rest and first in self.mirror.upstreams and first else ""
            rest = path[len(prefix) + 1 :] if prefix else path
        # Docker writes a name without a host as docker.io/library/NAME, and a daemon
        # asks its registry mirror (the routing without a prefix) for library/NAME.
        if "/" not in rest and (prefix in self.hub_prefixes or not (named_host or prefix)):
            rest = f"library/{rest}"
        name = check_name(f"{prefix}/{rest}" if prefix else rest)
        route = await self.mirror.route(name)
        if route is None:
            raise NameUnknown(
                {"reference": reference},
                message=f"{name} is hosted here, not mirrored: nothing to prefetch",
            )
        return route, name, wanted

    async def run(
        self, reference: str, platforms: Sequence[str] = (), report: Report = lambda _: None
    ) -> Prefetched:
        route, name, wanted = await self.resolve(reference)
        done = Prefetched(reference, name)
        top = await self.mirror.manifest(route, name, wanted, ACCEPT)
        self.pulls.record(top, name, wanted)
        done.digest, done.manifests = top.digest, 1
        report(f"{reference}: {name}@{top.digest} ({top.media_type})")
        images = [top]
        children = contents(top.content).children
        if children:
            chosen = [c for c in children if not platforms or platform_name(c) in platforms]
            if not chosen:
                listed = ", ".join(sorted({platform_name(c) for c in children}))
                raise ManifestUnknown(
                    {"reference": reference},
                    message=f"{reference}: the index has none of {', '.join(platforms)}; it "
                    f"has {listed}",
                )
            images = []
            for child in chosen:
                image = await self.mirror.manifest(route, name, child.digest, ACCEPT)
                self.pulls.record(image, name, child.digest)
                images.append(image)
                done.platforms.append(platform_name(child))
                report(f"  {platform_name(child)}: {child.digest}")
            done.manifests += len(images)
        for image in images:
            found = contents(image.content)
            for blob in [found.config, *found.layers]:
                if blob is not None:
                    await self._blob(route, name, blob, done, report)
        report(
            f"{reference}: {done.manifests} manifests, {done.blobs} blobs; "
            f"{done.fetched_bytes} bytes fetched, {done.cached_bytes} cached already"
        )
        return done

    async def _blob(
        self, route: MirrorRoute, name: str, blob: Layer, done: Prefetched, report: Report
    ) -> None:
        fetched = await self.mirror.blob(route, name, Digest.parse(blob.digest))
        done.blobs += 1
        if fetched.stream is None:
            done.cached_bytes += fetched.size
            report(f"    {blob.digest}: cached ({fetched.size} bytes)")
            return
        received = 0
        async for piece in fetched.stream:
            received += len(piece)
        done.fetched_bytes += received
        report(f"    {blob.digest}: fetched ({received} bytes)")
