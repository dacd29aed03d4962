"""/metrics access (metrics.access: admin is in test_repositories.py; here token and
open), and what one process counts: requests by route template, database statements by
name, storage operations, webhook attempts and deliveries."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from registry.app import create_app
from registry.config import ConfigError, Settings, load_settings
from tests.helpers import assert_error, push_blob, push_image, scraped
from tests.peers.receiver import Receiver

pytestmark = pytest.mark.anyio

TOKEN = "a-metrics-token-of-some-length"


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
            r = await c.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["push"]})
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
    assert after['registry_webhook_deliveries{state="delivered"}'] == 4
    assert after['registry_webhook_deliveries{state="pending"}'] == 0
    assert after["registry_uploads_in_progress"] == 0
    assert after["registry_db_connections_in_use"] >= 0
