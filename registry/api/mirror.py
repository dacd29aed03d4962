"""State for operators: GET /api/v1/mirror (JSON), GET /metrics
(Prometheus text: garbage collection's counters, and the mirror's if it is one). All are
for admins when auth is on."""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from registry.api.access import require_admin
from registry.api.common import registry_of
from registry.api.declare import API, Answer
from registry.errors import RouteUnknown
from registry.proxy.counters import COUNTERS
from registry.proxy.mirror import Mirror
from registry.services.gc import GC_COUNTERS

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


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
    return MirrorStatus(
        upstreams=[
            MirrorUpstream(url=u.url, prefix=u.prefix, authenticated=bool(u.username))
            for u in settings.upstreams
        ],
        tag_ttl_seconds=settings.tag_ttl_seconds,
        offline_fallback=settings.offline_fallback,
        mirror_only=settings.mirror_only,
        open=settings.open,
        stored=await mirror.cache_summary(),
        counters=await mirror.counters.totals(),
    )


async def metrics(request: Request) -> Response:
    await require_admin(request, "read the metrics")
    registry = registry_of(request)
    lines: list[str] = []

    def counter(metric: str, help_text: str, value: int) -> None:
        lines.extend([f"# HELP {metric} {help_text}.", f"# TYPE {metric} counter"])
        lines.append(f"{metric} {value}")

    gc = await registry.gc.totals()
    for name, help_text in GC_COUNTERS.items():
        counter(f"registry_{name}_total", help_text, gc[name])
    lines += [
        "# HELP registry_gc_queue_blobs Blobs queued for garbage collection to look at.",
        "# TYPE registry_gc_queue_blobs gauge",
        f"registry_gc_queue_blobs {await registry.gc.queued()}",
    ]
    if registry.mirror is not None:
        totals = await registry.mirror.counters.totals()
        for name, help_text in COUNTERS.items():
            counter(f"registry_mirror_{name}_total", help_text, totals[name])
    return PlainTextResponse("\n".join(lines) + "\n", media_type=PROMETHEUS_TEXT)
