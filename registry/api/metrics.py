"""GET /metrics: Prometheus's text format. This process's metrics (every worker's, in
multiprocess mode: registry/metrics.py), then what the database knows for the whole
registry, read now: garbage collection's totals and queue, the mirror's counters,
webhook deliveries by state, upload sessions. Who may read it is `metrics.access`."""

from __future__ import annotations

import hmac

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from registry.api.access import require_admin
from registry.errors import Unauthorized
from registry.metrics import exposition
from registry.proxy.counters import COUNTERS
from registry.requests import registry_of
from registry.services.gc import GC_COUNTERS

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class _Snapshot:
    """Families computed before the scrape (the database is read asynchronously)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


async def _allowed(request: Request) -> None:
    settings = registry_of(request).settings.metrics
    if settings.access == "open":
        return
    if settings.access == "token":
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.token.encode()
        ):
            raise Unauthorized(
                message="/metrics needs the Bearer token of metrics.token",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return
    await require_admin(request, "read the metrics")


async def metrics(request: Request) -> Response:
    await _allowed(request)
    registry = registry_of(request)
    families: list[Metric] = []
    gc = await registry.gc.totals()
    for name, help_text in GC_COUNTERS.items():
        families.append(CounterMetricFamily(f"registry_{name}", help_text, value=gc[name]))
    families.append(
        GaugeMetricFamily(
            "registry_gc_queue_blobs",
            "Blobs queued for garbage collection to look at.",
            value=await registry.gc.queued(),
        )
    )
    backlog = GaugeMetricFamily(
        "registry_webhook_deliveries", "Webhook deliveries kept, by state.", labels=["state"]
    )
    for state, count in (await registry.webhooks.backlog()).items():
        backlog.add_metric([state], count)
    families.append(backlog)
    families.append(
        GaugeMetricFamily(
            "registry_uploads_in_progress",
            "Upload sessions open (started, not finished nor abandoned).",
            value=await registry.uploads.in_progress(),
        )
    )
    if registry.mirror is not None:
        totals = await registry.mirror.counters.totals()
        for name, help_text in COUNTERS.items():
            families.append(
                CounterMetricFamily(f"registry_mirror_{name}", help_text, value=totals[name])
            )
        remaining = GaugeMetricFamily(
            "registry_mirror_upstream_ratelimit_remaining",
            "Pulls the upstream's RateLimit-Remaining said were left, when it last said so "
            "(Docker Hub sends it), by the upstream's prefix.",
            labels=["prefix"],
        )
        for prefix, upstream in (await registry.mirror.upstream_states()).items():
            if upstream.ratelimit_remaining is not None:
                remaining.add_metric([prefix], upstream.ratelimit_remaining)
        families.append(remaining)
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(_Snapshot(families))
    return Response(exposition(snapshot), media_type=PROMETHEUS_TEXT)
