"""The mirror's state for operators: GET /api/v1/mirror (JSON) and GET /metrics
(Prometheus text). Both are for admins when auth is on."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from registry.api.access import authorize, caller_identity
from registry.api.common import registry_of
from registry.errors import Denied, RouteUnknown, Unauthorized
from registry.proxy.counters import COUNTERS
from registry.proxy.mirror import Mirror

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


async def _admin_mirror(request: Request) -> Mirror:
    registry = registry_of(request)
    if registry.mirror is None:
        raise RouteUnknown(message="this registry is not a mirror (mirror.enabled is off)")
    if registry.auth is not None:
        await authorize(request, None)
        identity = await caller_identity(request)
        if identity.anonymous:
            raise Unauthorized(message="log in as an admin to read the mirror's state")
        if not identity.admin:
            raise Denied(message="only an admin may read the mirror's state")
    return registry.mirror


async def status(request: Request) -> Response:
    mirror = await _admin_mirror(request)
    settings = mirror.settings
    cache = await mirror.cache_summary()
    return JSONResponse(
        {
            "upstreams": [
                {"url": u.url, "prefix": u.prefix, "authenticated": bool(u.username)}
                for u in settings.upstreams
            ],
            "tag_ttl_seconds": settings.tag_ttl_seconds,
            "offline_fallback": settings.offline_fallback,
            "mirror_only": settings.mirror_only,
            "open": settings.open,
            "stored": cache,
            "counters": await mirror.counters.totals(),
        }
    )


async def metrics(request: Request) -> Response:
    mirror = await _admin_mirror(request)
    totals = await mirror.counters.totals()
    lines = []
    for name, help_text in COUNTERS.items():
        metric = f"registry_mirror_{name}_total"
        lines += [f"# HELP {metric} {help_text}.", f"# TYPE {metric} counter"]
        lines.append(f"{metric} {totals[name]}")
    return PlainTextResponse("\n".join(lines) + "\n", media_type=PROMETHEUS_TEXT)
