"""The mirror's state for operators: GET /api/v1/mirror (admins, when auth is on)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request

from registry.api.access import require_admin
from registry.api.common import registry_of
from registry.api.declare import API, Answer
from registry.errors import RouteUnknown
from registry.metadata import mirror as mq
from registry.metadata.models import now
from registry.proxy.mirror import Mirror


async def _admin_mirror(request: Request) -> Mirror:
    registry = registry_of(request)
    if registry.mirror is None:
        raise RouteUnknown(message="this registry is not a mirror (mirror.enabled is off)")
    await require_admin(request, "read the mirror's state")
    return registry.mirror


class MirrorUpstream(Answer):
    url: str
    prefix: str
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
    stored: dict[str, int] = Field(description="repositories, tags and bytes cached")
    counters: dict[str, int] = Field(description="counters over every process")


@API.operation(
    "GET",
    "/api/v1/mirror",
    summary="The mirror's upstreams, cache and counters (admins)",
    tag="operations",
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
    return MirrorStatus(
        upstreams=[
            MirrorUpstream(
                url=cache.url,
                prefix=cache.prefix,
                authenticated=bool(upstream.username),
                keep_days=cache.keep_days,
                max_bytes=cache.max_bytes,
                bytes=usage[cache.prefix],
                **_rate_limit(states.get(cache.prefix)),
            )
            for upstream, cache in zip(settings.upstreams, expiry.caches, strict=True)
        ],
        tag_ttl_seconds=settings.tag_ttl_seconds,
        offline_fallback=settings.offline_fallback,
        mirror_only=settings.mirror_only,
        open=settings.open,
        stored=await mirror.cache_summary(),
        counters=await mirror.counters.totals(),
    )


def _rate_limit(state: mq.UpstreamState | None) -> dict[str, Any]:
    if state is None:
        return {}
    backoff = state.backoff_until
    return {
        "ratelimit_limit": state.ratelimit_limit,
        "ratelimit_remaining": state.ratelimit_remaining,
        "ratelimit_seen_at": state.seen_at.isoformat() if state.seen_at else None,
        "backoff_until": backoff.isoformat() if backoff and backoff > now() else None,
    }
