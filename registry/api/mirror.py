"""The mirror's state for operators: GET /api/v1/mirror (admins, when auth is on)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from pydantic import Field
from starlette.requests import Request

from registry.api.access import require_admin
from registry.api.declare import Answer, Body, Operations
from registry.errors import RegistryError, RouteUnknown
from registry.proxy.mirror import Mirror, UpstreamState
from registry.proxy.prefetch import Prefetcher, check_platform
from registry.requests import registry_of

OPERATIONS = Operations(tag="operations")


async def _admin_mirror(request: Request) -> Mirror:
    registry = registry_of(request)
    if registry.mirror is None:
        raise RouteUnknown(message="this registry is not a mirror (mirror.enabled is off)")
    await require_admin(request, "read the mirror's state")
    return registry.mirror


class MirrorUpstream(Answer):
    url: str = Field(description="for a pattern of mirror.allow_hosts, https:// and it")
    prefix: str = Field(description="the cache's first name component, or the pattern")
    authenticated: bool
    keep_days: float = Field(description="cached content not pulled for this long goes; 0: never")
    max_bytes: int = Field(description="the cache is kept under this size; 0: no limit")
    bytes: int = Field(description="what the cache's manifests use, each blob counted once")
    ratelimit_limit: int | None = Field(
        None, description="the upstream's RateLimit-Limit, as it said last (Docker Hub's pulls)"
    )
    ratelimit_remaining: int | None = Field(
        None, description="the upstream's RateLimit-Remaining, as it said last"
    )
    ratelimit_seen_at: str | None = Field(None, description="when it said so")
    backoff_until: str | None = Field(
        None, description="after a 429, nothing is sent to it until then; the cache serves"
    )


class MirrorStatus(Answer):
    upstreams: list[MirrorUpstream]
    tag_ttl_seconds: float
    offline_fallback: bool
    mirror_only: bool
    open: bool
    allow_hosts: list[str] = Field(
        description="host patterns clients may name (mirror.allow_hosts)"
    )
    stored: dict[str, int] = Field(description="repositories, tags and bytes cached")
    counters: dict[str, int] = Field(description="counters over every process")


@OPERATIONS.operation(
    "GET",
    "/api/v1/mirror",
    summary="The mirror's upstreams, cache and counters (admins)",
    response=MirrorStatus,
    errors=[404],
)
async def status(request: Request) -> MirrorStatus:
    mirror = await _admin_mirror(request)
    settings = mirror.settings
    expiry = registry_of(request).gc.expiry
    assert expiry is not None  # made with the mirror
    usage = await expiry.usage()
    states = await mirror.upstream_states()
    credentials = {u.prefix: u.username for u in settings.upstreams}
    return MirrorStatus(
        upstreams=[
            MirrorUpstream(
                url=cache.url,
                prefix=cache.prefix,
                authenticated=bool(credentials.get(cache.prefix)),
                keep_days=cache.keep_days,
                max_bytes=cache.max_bytes,
                bytes=usage[cache.prefix],
                **_rate_limit(states.get(cache.prefix)),
            )
            for cache in expiry.caches
        ],
        tag_ttl_seconds=settings.tag_ttl_seconds,
        offline_fallback=settings.offline_fallback,
        mirror_only=settings.mirror_only,
        allow_hosts=mirror.allowed,
        open=settings.open,
        stored=await mirror.cache_summary(),
        counters=await mirror.counters.totals(),
    )


def _rate_limit(state: UpstreamState | None) -> dict[str, Any]:
    if state is None:
        return {}
    backoff = state.backoff_until
    return {
        "ratelimit_limit": state.ratelimit_limit,
        "ratelimit_remaining": state.ratelimit_remaining,
        "ratelimit_seen_at": state.seen_at.isoformat() if state.seen_at else None,
        "backoff_until": backoff.isoformat() if backoff and backoff > datetime.now(UTC) else None,
    }


class PrefetchRequest(Body):
    references: list[str] = Field(
        min_length=1, max_length=100, description="as a node pulls them: ghcr.io/org/app:v1"
    )
    platforms: list[str] = Field(
        default_factory=list, max_length=32, description="os/arch[/variant]; none: every one"
    )


class PrefetchedImage(Answer):
    reference: str
    repository: str = Field(description="the cache's name for it")
    digest: str = ""
    manifests: int = 0
    blobs: int = 0
    fetched_bytes: int = Field(default=0, description="fetched from the upstream now")
    cached_bytes: int = Field(default=0, description="in the cache already")
    platforms: list[str] = Field(default_factory=list, description="of an index, those fetched")
    error: dict[str, Any] | None = Field(
        None, description="why this one failed (the spec's error), if it did"
    )


class PrefetchResult(Answer):
    images: list[PrefetchedImage]


@OPERATIONS.operation(
    "POST",
    "/api/v1/mirror/prefetch",
    summary="Fetch images into the cache ahead of a rollout (admins)",
    response=PrefetchResult,
    body=PrefetchRequest,
    errors=[400, 404],
)
async def prefetch(request: Request, body: PrefetchRequest) -> PrefetchResult:
    """Each reference is fetched in turn, with every platform of an index or those given,
    and counted as pulled; the answer comes once all are in the cache. One that fails
    (unknown upstream, no such tag) is reported with its error and the others go on."""
    mirror = await _admin_mirror(request)
    platforms = [check_platform(p) for p in body.platforms]
    prefetcher = Prefetcher(mirror, registry_of(request).pulls)
    images = []
    for reference in body.references:
        try:
            done = await prefetcher.run(reference, platforms)
        except RegistryError as exc:
            error = {"code": exc.code, "message": exc.text}
            images.append(PrefetchedImage(reference=reference, repository="", error=error))
            continue
        images.append(PrefetchedImage.model_validate(dataclasses.asdict(done)))
    return PrefetchResult(images=images)
