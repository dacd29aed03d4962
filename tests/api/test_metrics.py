"""/metrics access (metrics.access: admin is in test_repositories.py; here token and
open), and what one process counts: requests by route template, database statements by
name, storage operations, webhook attempts and deliveries."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from registry.app import create_app
from registry.config import ConfigError, Settings, load_settings
from registry.metrics import Declared, publish, tally, timings
from registry.proxy.counters import COUNTERS
from tests.helpers import assert_error, push_blob, push_image, scraped
from tests.peers.receiver import Receiver

pytestmark = pytest.mark.anyio

TOKEN = "a-metrics-token-of-some-length"
DASHBOARD = Path(__file__).resolve().parents[2] / "docs/grafana/registry-dashboard.json"


@pytest.fixture
def storage_env() -> dict[str, str]:
    return {}


async def test_a_token_or_nothing_opens_metrics(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(metrics_access="token", metrics_token=TOKEN))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as c:
            r = await c.get("/metrics")
            assert_error(r, 401, "UNAUTHORIZED")
            assert r.headers["www-authenticate"] == 'Bearer realm="metrics"'
            wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
            assert_error(await c.get("/metrics", headers=wrong), 401, "UNAUTHORIZED")
            r = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    finally:
        await app.state.registry.close()
    with pytest.raises(ConfigError, match=r"metrics\.token"):
        load_settings(None, {"REGISTRY_METRICS_ACCESS": "token"})
    with pytest.raises(ConfigError, match=r"metrics\.access"):
        load_settings(None, {"REGISTRY_METRICS_ACCESS": "public"})


async def test_one_process_counts_routes_statements_storage_and_webhooks(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(metrics_access="open", webhooks_backoff_seconds="0.01"))
    transport = httpx.ASGITransport(app=app)
    receiver = Receiver(answer=lambda n: 500 if n == 0 else 200)
    registry = app.state.registry
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as c:
            before = scraped((await c.get("/metrics")).text)
            r = await c.post(
                "/api/v1/webhooks", json={"url": receiver.url, "events": ["push", "blob"]}
            )
            assert r.status_code == 201
            await push_image(c, "team/app", "v1", layers=[b"counted"])
            for _ in range(3):
                r = await c.get("/v2/team/app/manifests/v1", headers={"Accept": "*/*"})
                assert r.status_code == 200
            await push_blob(c, "team/app", b"one more")
            for _ in range(50):
                await registry.webhooks.step()
                if (await registry.webhooks.backlog())["pending"] == 0:
                    break
            after = scraped((await c.get("/metrics")).text)
    finally:
        receiver.close()
        await registry.close()

    def grew(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    route = 'code="200",method="GET",route="/v2/{name:path}/manifests/{reference}"'
    assert grew(f"registry_http_requests_total{{{route}}}") == 3
    assert grew('registry_db_query_duration_seconds_count{statement="manifest_by_tag"}') == 3
    assert grew('registry_db_query_duration_seconds_count{statement="insert events"}') >= 1
    write = 'driver="filesystem",operation="write_blob"'
    assert grew(f"registry_storage_operation_duration_seconds_count{{{write}}}") == 3
    put = 'driver="filesystem",operation="put_bytes"'
    assert grew(f"registry_storage_operation_duration_seconds_count{{{put}}}") == 1
    assert grew('registry_webhook_attempts_total{outcome="retried"}') == 1
    assert grew('registry_webhook_attempts_total{outcome="delivered"}') == 4
    assert after['registry_webhook_deliveries{state="pending"}'] == 0
    assert after['registry_webhook_deliveries{state="failed"}'] == 0
    assert 'registry_webhook_deliveries{state="delivered"}' not in after
    assert after["registry_uploads_in_progress"] == 0
    assert after["registry_db_connections_in_use"] >= 0


async def test_the_grafana_dashboard_asks_only_for_metrics_the_registry_has(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(metrics_access="open"))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as c:
            await push_blob(c, "team/app", b"so that every family has a sample")
            exposed = set(scraped((await c.get("/metrics")).text))
    finally:
        await app.state.registry.close()
    names = {key.split("{", 1)[0] for key in exposed}
    # With a mirror only:
    names |= {f"registry_mirror_{name}_total" for name in COUNTERS}
    names.add("registry_mirror_upstream_ratelimit_remaining")
    # Those of this process that have no sample yet (labelled, and not used here).
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    for family in REGISTRY.collect():
        names |= {family.name + end for end in suffixes.get(family.type, [""])}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    for expr in exprs:
        assert expr.count("(") == expr.count(")"), expr
        for metric in re.findall(r"registry_\w+", expr):
            assert metric in names, (metric, expr)
    used = {m for e in exprs for m in re.findall(r"registry_\w+", e)}
    families = {
        re.sub(r"_(bucket|count|sum)$", "", n)
        for n in names
        if n.startswith("registry_") and not n.endswith("_created")
    }
    # Every family of the registry is on the dashboard, in one form or another.
    assert {re.sub(r"_(bucket|count|sum)$", "", m) for m in used} >= families - {
        "registry_gc_runs_total",
        "registry_gc_tags_deleted_total",
        "registry_gc_manifests_deleted_total",
        "registry_gc_postponed_total",
        "registry_mirror_manifest_revalidations_total",
        "registry_mirror_offline_served_total",
        "registry_mirror_upstream_bytes_total",
        "registry_mirror_cache_bytes_total",
    }


def test_buffered_observations_publish_what_direct_ones_would() -> None:
    """Timings and Tally add to prometheus_client's own values (its bucket and sum values
    among them): the exposition is the one direct observations give, bounds included."""
    direct, buffered = CollectorRegistry(), CollectorRegistry()
    buckets = (0.001, 0.01, 0.1, 1)
    plain = Histogram("t_seconds", "t", ["k"], buckets=buckets, registry=direct)
    held = Declared(Histogram, "t_seconds", "t", ["k"], buckets=buckets, registry=buffered)
    plain_count = Counter("c", "c", registry=direct)
    held_count = Declared(Counter, "c", "c", registry=buffered)
    timed, counted = timings(held, "a"), tally(held_count)
    values = [0.0, 0.001, 0.0010001, 0.01, 0.5, 1.0, 7.0, 0.0005]
    for _ in range(2):  # twice: what a publish moved is not moved again
        for value in values:
            plain.labels("a").observe(value)
            timed.observe(value)
            plain_count.inc(value)
            counted.inc(value)
        assert generate_latest(buffered) != generate_latest(direct)
        publish()
        want, got = (scraped(generate_latest(r).decode()) for r in (direct, buffered))
        assert got.keys() == want.keys()
        for name, value in want.items():
            # Sums of the same values, added in another order: equal but for rounding.
            exact = "_bucket" in name or "_count" in name
            assert got[name] == (value if exact else pytest.approx(value)), name
