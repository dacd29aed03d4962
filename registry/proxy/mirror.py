"""The pull-through mirror: repositories served from upstream registries and cached here.

Manifests by digest are fetched once and kept. Tags are served from the cache while fresh
(`tag_ttl_seconds`); a stale tag is revalidated with a HEAD, which Docker Hub does not count
against pull limits, and fetched again only when its digest changed. When the upstream is
unreachable, fails or rate-limits, a cached tag is served as it is (with offline fallback
on). Blobs are fetched on first request through BlobFetches, streamed to the client as they
arrive, and kept once their digest is verified.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta

import httpx

from registry.config import MirrorSettings, UpstreamSettings, host_patterns, upstream_keys
from registry.digest import Digest, is_digest
from registry.errors import (
    BlobUnknown,
    Denied,
    ManifestInvalid,
    ManifestUnknown,
    RegistryError,
    TooManyRequests,
    Unavailable,
)
from registry.mediatypes import INDEX_TYPES, accepts
from registry.metadata import blobs, manifests, repositories, tags
from registry.metadata import mirror as mq
from registry.metadata.accounts import namespace_id
from registry.metadata.database import Database
from registry.metadata.manifests import StoredManifest
from registry.metadata.mirror import UpstreamState as UpstreamState
from registry.metadata.models import now
from registry.names import check_tag, namespace_of
from registry.proxy.counters import Counters
from registry.proxy.fetches import BlobFetches
from registry.proxy.flights import Flights
from registry.proxy.upstream import RemoteManifest, Upstream, UpstreamError, allowed_host
from registry.services.blobs import BlobService
from registry.services.leases import Leases
from registry.services.manifests import ManifestService, default_child
from registry.services.sources import BlobFound
from registry.signatures import COSIGN_ARTIFACT, read_payload, signature_tag, signers
from registry.storage import BlobStore

log = logging.getLogger("registry.mirror")


@dataclass(frozen=True, slots=True)
class MirrorRoute:
    """Where a mirrored repository comes from: an upstream, and its name there (before
    Docker Hub's `library/`, which the upstream client adds)."""

    upstream: Upstream
    remote: str


class Mirror:
    def __init__(
        self,
        settings: MirrorSettings,
        db: Database,
        store: BlobStore,
        blobs: BlobService,
        manifests: ManifestService,
        leases: Leases,
        manifest_limit: int,
    ) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.blobs = blobs
        self.manifests = manifests
        self.leases = leases
        self.manifest_limit = manifest_limit
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_seconds),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        self.upstreams = {u.prefix: _upstream(u, self.client) for u in settings.upstreams}
        self.allowed = host_patterns(settings.allow_hosts)
        self.counters = Counters(db, self.upstreams)
        self.fetches = BlobFetches(db, store, leases, self._fetch_ended)
        self.ttl = timedelta(seconds=settings.tag_ttl_seconds)
        self.flights = Flights(settings.negative_ttl_seconds)

    async def route(self, name: str) -> MirrorRoute | None:
        """The upstream a repository mirrors, or None for a repository hosted here."""
        first, _, rest = name.partition("/")
        if rest and first in self.upstreams and first:
            route = MirrorRoute(self.upstreams[first], rest)
        elif rest and allowed_host(first, self.allowed):
            route = MirrorRoute(self._allowed_upstream(first), rest)
        elif "" in self.upstreams:
            route = MirrorRoute(self.upstreams[""], name)
        else:
            return None
        if not self.settings.mirror_only:
            async with self.db.read() as conn:
                if await namespace_id(conn, namespace_of(name)) is not None:
                    return None
        return route

    def _allowed_upstream(self, host: str) -> Upstream:
        """The upstream of a host `mirror.allow_hosts` lets clients name: HTTPS on its
        standard port, anonymous, made the first time it is asked for."""
        upstream = Upstream(f"https://{host}", self.client)
        self.upstreams[host] = upstream
        self.counters.watch(host, upstream)
        log.info("mirroring %s, which matches mirror.allow_hosts", upstream.url)
        return upstream

    # Manifests

    async def manifest(
        self, route: MirrorRoute, name: str, reference: str, accept: list[str]
    ) -> StoredManifest:
        if is_digest(reference):
            found = await self._by_digest(route, name, str(Digest.parse(reference)))
        else:
            found = await self._by_tag(route, name, check_tag(reference))
        if accepts(accept, found.media_type):
            return found
        if found.media_type in INDEX_TYPES and not is_digest(reference):
            # A client that cannot read indexes gets the linux/amd64 image, as from a
            # registry that holds the image itself.
            child = default_child(found.content)
            if child is not None:
                fallback = await self._by_digest(route, name, child)
                if accepts(accept, fallback.media_type):
                    return fallback
        # The manifest service words the refusal.
        return await self.manifests.get(name, found.digest, accept)

    async def _by_digest(self, route: MirrorRoute, name: str, digest: str) -> StoredManifest:
        found = await manifests.by_digest(self.db, name, digest)
        if found is not None:
            self.counters.add("manifest_hits")
            return found
        return await self._fetch_manifest(route, name, digest, None)

    async def _by_tag(self, route: MirrorRoute, name: str, tag: str) -> StoredManifest:
        async with self.db.read() as conn:
            cached = await mq.cached_tag(conn, name, tag)
        if cached is not None and now() - cached.checked_at < self.ttl:
            self.counters.add("manifest_hits")
            return cached.manifest
        key = (route.upstream.url, "tag", route.remote, tag)
        try:
            if self._known_missing(key):
                digest = None
            else:
                digest = await self.flights.run(
                    key, lambda: route.upstream.manifest_digest(route.remote, tag)
                )
            if digest is None:
                await self._forget_tag(name, tag, cached is not None)
                raise ManifestUnknown({"reference": tag}, message=_absent(route, f"tag {tag}"))
            if cached is not None and cached.manifest.digest == digest:
                async with self.db.write() as conn:
                    await mq.touch_tag(conn, name, tag)
                self.counters.add("manifest_revalidations")
                return cached.manifest
            # By digest: the tag may move again between the HEAD and this GET.
            return await self._fetch_manifest(route, name, digest, tag)
        except UpstreamError as exc:
            if cached is not None and self.settings.offline_fallback:
                self.counters.add("offline_served")
                log.warning(
                    "serving %s:%s from the cache as it was %s ago: %s",
                    name,
                    tag,
                    _age(now() - cached.checked_at),
                    exc,
                )
                return cached.manifest
            raise self._error(exc, f"tag {tag} of {name}") from None

    async def _fetch_manifest(
        self, route: MirrorRoute, name: str, digest: str, tag: str | None
    ) -> StoredManifest:
        """Fetch and cache a manifest: once, however many ask for it at the same time."""

        async def fetch() -> StoredManifest | None:
            remote = await route.upstream.manifest(route.remote, digest, self.manifest_limit)
            if remote is None:
                return None
            if route.upstream.signed_by:
                await self._require_signed(route, name, remote, tag)
            try:
                await self.manifests.cache(
                    name, Digest.parse(remote.digest), remote.content, remote.media_type, tag
                )
            except ManifestInvalid as exc:
                raise Unavailable(
                    {"reference": digest},
                    message=f"the upstream's manifest {digest} cannot be served: {exc.text}",
                ) from None
            self.counters.add("manifest_misses")
            return StoredManifest(remote.digest, remote.media_type, remote.content)

        key = (route.upstream.url, "manifest", route.remote, digest, tag)
        try:
            found = None if self._known_missing(key) else await self.flights.run(key, fetch)
        except UpstreamError as exc:
            raise self._error(exc, f"manifest {digest} of {name}") from None
        if found is None:
            raise ManifestUnknown({"reference": digest}, message=_absent(route, digest))
        return found

    async def _require_signed(
        self, route: MirrorRoute, name: str, remote: RemoteManifest, tag: str | None
    ) -> None:
        """An upstream with `signed_by`: what none of its keys signed is refused, before
        it is cached. Signatures, SBOMs and other referrers pass (clients verify with
        them), as does a platform of an index served here (so signed)."""
        if (tag or "").startswith("sha256-") or _refers(remote.content):
            return
        repository = route.upstream.remote_name(route.remote)
        # cosign's tag, and its referrers where the upstream has the referrers API.
        found = [
            await route.upstream.manifest(
                route.remote, signature_tag(remote.digest), self.manifest_limit
            )
        ]
        for referrer in await route.upstream.referrers(route.remote, remote.digest) or []:
            if referrer.get("artifactType") == COSIGN_ARTIFACT and is_digest(
                str(referrer.get("digest"))
            ):
                found.append(
                    await route.upstream.manifest(
                        route.remote, referrer["digest"], self.manifest_limit
                    )
                )

        async def payload(digest: str) -> bytes | None:
            async with route.upstream.blob(route.remote, digest) as response:
                return await read_payload(response.aiter_bytes(), digest)

        signatures = [s.content for s in found if s is not None]
        keys = route.upstream.signed_by
        if await signers(remote.digest, repository, keys, signatures, payload, first=True):
            return
        async with self.db.read() as conn:
            if await mq.listed_by_index(conn, name, remote.digest):
                return
        self.counters.add("unsigned_refused")
        raise Denied(
            {"digest": remote.digest},
            message=f"{route.upstream.url} is mirrored for images signed by "
            f"{len(keys)} key{'s' if len(keys) > 1 else ''} (mirror.upstreams[].signed_by), "
            f"and no cosign signature there by one of them signs {repository}@"
            f"{remote.digest}; it is neither served nor cached",
        )

    async def _forget_tag(self, name: str, tag: str, cached: bool) -> None:
        """The upstream no longer has the tag: neither does the cache."""
        if cached:
            async with self.db.write() as conn:
                await tags.delete_tag(conn, name, tag)
            log.info("tag %s:%s is gone upstream; removed from the cache", name, tag)

    # Blobs

    async def blob_size(self, route: MirrorRoute, name: str, digest: Digest) -> int:
        """The size for a blob HEAD: from the cache, else from the upstream (a HEAD there,
        nothing fetched)."""
        served = await self._served(name, digest)
        if served is not None:
            return served
        cached = await blobs.cached(self.db, name, str(digest))
        size = await self._upstream_blob_size(route, name, digest)
        if cached is not None:
            await self._link_stored(name, str(digest))
        return size

    async def blob(self, route: MirrorRoute, name: str, digest: Digest) -> BlobFound:
        key = str(digest)
        size = await self._served(name, digest)
        if size is None:
            cached = await blobs.cached(self.db, name, key)
            if cached is not None:
                # Held for another repository: serve it once the upstream confirms this
                # repository has it too, so no name reads a blob it could not read
                # upstream.
                await self._upstream_blob_size(route, name, digest)
                if await self._link_stored(name, key):
                    size = cached.size  # else collected meanwhile: fetch it again
        if size is not None:
            self.counters.add("blob_hits")
            self.counters.add("cache_bytes", size)
            return BlobFound(size, None)

        async def keep(size: int) -> None:
            await self._link(name, key, size)

        def source() -> AbstractAsyncContextManager[httpx.Response]:
            return route.upstream.blob(route.remote, key)

        missing = (route.upstream.url, "blob", route.remote, key)
        if self._known_missing(missing):
            raise BlobUnknown({"digest": key}, message=_absent(route, key))
        try:
            size, stream = await self.fetches.open(digest, source, keep)
        except UpstreamError as exc:
            if exc.status == 404:
                self.flights.miss(missing)
                raise BlobUnknown({"digest": key}, message=_absent(route, key)) from None
            # The failed fetch counted itself.
            raise self._error(exc, f"blob {key} of {name}", counted=True) from None
        return BlobFound(size, stream)

    async def _served(self, name: str, digest: Digest) -> int | None:
        """The size of a blob this repository's cache has, its lease renewed as for a
        push's HEAD (services/leases.py): a blob served within a lease is not collected
        under its client, even once its manifest has expired. None if not linked here."""
        try:
            return await self.blobs.size(name, digest, renew=True)
        except BlobUnknown:
            return None

    def _known_missing(self, key: Hashable) -> bool:
        """Whether the upstream said lately it has no such thing: then it is not asked."""
        if self.flights.missing(key):
            self.counters.add("negative_hits")
            return True
        return False

    def _fetch_ended(self, size: int | Exception) -> None:
        if isinstance(size, Exception):
            unsent = isinstance(size, UpstreamError) and size.unsent
            self.counters.add("backoff_refusals" if unsent else "upstream_errors")
            return
        self.counters.add("blob_misses")
        self.counters.add("upstream_bytes", size)

    async def _upstream_blob_size(self, route: MirrorRoute, name: str, digest: Digest) -> int:
        key = (route.upstream.url, "blob", route.remote, str(digest))
        try:
            if self._known_missing(key):
                size = None
            else:
                size = await self.flights.run(
                    key, lambda: route.upstream.blob_size(route.remote, str(digest))
                )
        except UpstreamError as exc:
            raise self._error(exc, f"blob {digest} of {name}") from None
        if size is None:
            raise BlobUnknown({"digest": str(digest)}, message=_absent(route, str(digest)))
        return size

    async def _link(self, name: str, digest: str, size: int) -> None:
        """Link a blob just fetched (or whose lease was just renewed)."""
        async with self.db.write() as conn:
            repo_id = await repositories.ensure_repository(conn, name)
            await blobs.link_blob(conn, repo_id, digest, size, self.leases.end())

    async def _link_stored(self, name: str, digest: str) -> bool:
        """Link a blob stored for another repository; False if a collection removed it."""
        async with self.db.write() as conn:
            size = await blobs.renew_lease(conn, digest, self.leases.end())
            if size is None:
                return False
            repo_id = await repositories.ensure_repository(conn, name)
            await blobs.link_blob(conn, repo_id, digest, size, self.leases.end())
        return True

    def _error(self, exc: UpstreamError, what: str, counted: bool = False) -> RegistryError:
        """The spec's error for an upstream failure, with what to do about it."""
        if not counted:
            self.counters.add("backoff_refusals" if exc.unsent else "upstream_errors")
        if exc.status == 429:
            headers = {"Retry-After": exc.retry_after} if exc.retry_after else None
            said = str(exc) if exc.unsent else "the upstream rate-limits this mirror"
            return TooManyRequests(
                message=f"{said}, and the cache has no copy of {what}; retry later, or give "
                "the mirror upstream credentials",
                headers=headers,
            )
        if exc.status in (401, 403):
            return Unavailable(
                message=f"the upstream refused the mirror's credentials for {what} ({exc}); "
                "check mirror.upstreams username and password"
            )
        return Unavailable(message=f"cannot get {what} from the upstream: {exc}")

    async def cache_summary(self) -> dict[str, int]:
        async with self.db.read() as conn:
            held, tagged, size = await mq.cache_summary(conn)
        return {"repositories": held, "tags": tagged, "bytes": size}

    async def upstream_states(self) -> dict[str, UpstreamState]:
        """What each upstream (by prefix) said last of its rate limit, whichever process
        heard it; and its backoff."""
        await self.counters.flush()
        async with self.db.read() as conn:
            return await mq.upstream_states(conn)

    async def close(self) -> None:
        await self.flights.close()
        await self.fetches.close()
        await self.counters.close()
        await self.client.aclose()


def _upstream(settings: UpstreamSettings, client: httpx.AsyncClient) -> Upstream:
    upstream = Upstream(settings.url, client, settings.username or None, settings.password or None)
    upstream.signed_by = upstream_keys(settings)
    return upstream


def _refers(content: bytes) -> bool:
    """Whether a manifest is a referrer (it has a subject)."""
    try:
        document = json.loads(content)
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("subject"), dict)


def _absent(route: MirrorRoute, what: str) -> str:
    return f"{route.upstream.url} has no {what} in {route.upstream.remote_name(route.remote)}"


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


class Mirrored:
    """A mirrored repository's source (services/sources.py): the mirror, for the route the
    access gate found."""

    def __init__(self, mirror: Mirror, route: MirrorRoute) -> None:
        self.mirror = mirror
        self.route = route

    async def manifest(self, name: str, reference: str, accept: list[str]) -> StoredManifest:
        return await self.mirror.manifest(self.route, name, reference, accept)

    async def blob(self, name: str, digest: Digest, *, head: bool) -> BlobFound:
        if head:
            return BlobFound(await self.mirror.blob_size(self.route, name, digest))
        return await self.mirror.blob(self.route, name, digest)
