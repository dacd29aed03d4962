"""Usage (per namespace deduplicated, per repository, shared, reclaimable, uploads) kept
exact by triggers as blobs are linked and unlinked, and namespace quotas: a blob that
would take its namespace past its quota is refused with 403 DENIED giving used and limit;
a refused push counts nothing; parallel pushes cannot overshoot. On SQLite and
PostgreSQL, filesystem and S3."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette

from tests.helpers import assert_error, push_blob, push_image, sha256

pytestmark = pytest.mark.anyio


# Leases of 0.2 s (renewals 0.4 s), for tests/api/conftest.py's app.
SETTINGS = {"gc_blob_lease_seconds": "0.2"}


async def usage(client: httpx.AsyncClient, namespace: str) -> dict:
    r = await client.get(f"/api/v1/namespaces/{namespace}/usage")
    assert r.status_code == 200, r.text
    return r.json()


async def test_usage_counts_each_blob_once_per_namespace(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    _, a = await push_image(client, "team/a", "v1", layers=[b"x" * 1000, b"shared" * 100])
    _, b = await push_image(client, "team/b", "v1", layers=[b"shared" * 100])
    await push_image(client, "other/c", "v1", layers=[b"shared" * 100])
    config = len(b'{"ref": "v1"}')
    team = await usage(client, "team")
    assert team["bytes"] == 1000 + 600 + config + len(a) + len(b)
    repos = {r["name"]: r for r in team["repositories"]}
    assert repos["team/a"]["bytes"] == 1000 + 600 + config + len(a)
    assert repos["team/a"]["shared_bytes"] == 600 + config  # team/b and other/c have them
    assert repos["team/b"]["bytes"] == 600 + config + len(b)
    overall = (await client.get("/api/v1/usage")).json()
    assert {n["namespace"]: n["repositories"] for n in overall["namespaces"]} == {
        "other": 1,
        "team": 2,
    }
    # other/c's image is team/b's, byte for byte: stored once in the registry.
    assert overall["stored_bytes"] == 1000 + 600 + config + len(a) + len(b)

    # Deleting a repository takes its links out at once; collection then frees bytes.
    assert (await client.delete("/api/v1/repositories/team/a")).status_code == 202
    team = await usage(client, "team")
    assert team["bytes"] == 600 + config + len(b)
    await asyncio.sleep(0.6)
    assert (await usage(client, "team"))["reclaimable_bytes"] == 0  # team/a's links are gone
    assert (await client.get("/api/v1/usage")).json()["reclaimable_bytes"] >= 1000
    await app.state.registry.gc.collect()
    assert (await client.get("/api/v1/usage")).json()["reclaimable_bytes"] == 0


async def test_uploads_in_progress_and_reclaimable_bytes(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await client.post("/v2/team/app/blobs/uploads/")
    await push_blob(client, "team/app", b"unused" * 10)
    team = await usage(client, "team")
    assert team["uploads"] == 1 and team["bytes"] == 60
    await asyncio.sleep(0.6)
    assert (await usage(client, "team"))["reclaimable_bytes"] == 60
    await app.state.registry.gc.collect()
    team = await usage(client, "team")
    assert (team["bytes"], team["reclaimable_bytes"]) == (0, 0)


async def test_a_push_over_the_quota_is_refused_and_counts_nothing(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await push_image(client, "team/app", "v1", layers=[b"a" * 500])
    used = (await usage(client, "team"))["bytes"]
    r = await client.patch("/api/v1/namespaces/team/policy", json={"quota_bytes": used + 100})
    assert r.status_code == 200
    big = b"b" * 200
    r = await client.post(
        "/v2/team/app/blobs/uploads/", params={"digest": sha256(big)}, content=big
    )
    error = assert_error(r, 403, "DENIED")
    assert error["detail"] == {
        "namespace": "team",
        "used": used,
        "limit": used + 100,
        "needed": 200,
    }
    assert "would go over its quota" in error["message"]
    assert (await usage(client, "team"))["bytes"] == used
    assert (await client.head(f"/v2/team/app/blobs/{sha256(big)}")).status_code == 404
    # What the namespace holds already costs nothing; another namespace is not limited.
    await push_blob(client, "team/other", b"a" * 500)
    await push_blob(client, "elsewhere/app", big)
    await push_blob(client, "team/app", b"c" * 50)
    # A mount over the quota falls back to an upload, which is refused.
    r = await client.post(
        "/v2/team/app/blobs/uploads/", params={"mount": sha256(big), "from": "elsewhere/app"}
    )
    assert r.status_code == 202
    # Raising the quota lets it in.
    await client.patch("/api/v1/namespaces/team/policy", json={"quota_bytes": None})
    await push_blob(client, "team/app", big)


async def test_parallel_pushes_cannot_overshoot_the_quota(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await client.patch("/api/v1/namespaces/team/policy", json={"quota_bytes": 1000})
    blobs = [bytes([n]) * 300 for n in range(8)]

    async def push(data: bytes) -> int:
        r = await client.post(
            "/v2/team/app/blobs/uploads/", params={"digest": sha256(data)}, content=data
        )
        return r.status_code

    statuses = await asyncio.gather(*(push(b) for b in blobs))
    assert sorted(statuses) == [201] * 3 + [403] * 5
    assert (await usage(client, "team"))["bytes"] == 900


async def test_a_pass_folds_the_deltas_and_the_usage_stays_the_same(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    from sqlalchemy import func, select

    from registry.metadata.models import UsageDelta

    await push_image(client, "team/app", "v1", layers=[b"x" * 300])
    before = await usage(client, "team")
    registry = app.state.registry

    async def deltas() -> int:
        async with registry.db.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(UsageDelta)))

    assert await deltas() == 3  # manifest, config, layer
    await registry.gc.collect()
    assert await deltas() == 0
    assert await usage(client, "team") == before
