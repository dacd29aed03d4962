"""DELETE /api/v1/repositories/<name>: a repository's tags, manifests and links go at once;
garbage collection frees what nothing else references; the permission is a /v2/ delete's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.auth.accounts import Accounts
from registry.config import Settings
from registry.digest import Digest
from tests.api.conftest import PASSWORD
from tests.helpers import TokenAuth, assert_error, basic, push_image, sha256

pytestmark = pytest.mark.anyio


async def test_deleting_a_repository_removes_it_and_frees_what_only_it_used(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(gc_blob_lease_seconds="0.3"))
    registry = app.state.registry
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as client:
            v1, _ = await push_image(client, "team/app", "v1", layers=[b"own", b"shared"])
            await push_image(client, "team/app", "v2", layers=[b"own 2"])
            await push_image(client, "team/other", "o1", layers=[b"shared"])

            r = await client.delete("/api/v1/repositories/team/app")
            assert r.status_code == 202, r.text
            assert r.json() == {"repository": "team/app", "tags": 2, "manifests": 2}
            assert_error(await client.get("/v2/team/app/tags/list"), 404, "NAME_UNKNOWN")
            r = await client.get(f"/v2/team/app/manifests/{v1}")
            assert_error(r, 404, "MANIFEST_UNKNOWN")
            r = await client.head(f"/v2/team/app/blobs/{sha256(b'own')}")
            assert r.status_code == 404
            catalog = (await client.get("/v2/_catalog")).json()["repositories"]
            assert catalog == ["team/other"]
            assert_error(await client.delete("/api/v1/repositories/team/app"), 404, "NAME_UNKNOWN")

            await asyncio.sleep(0.8)  # past the leases
            done = await registry.gc.collect()
            assert done.blobs_deleted >= 5  # two manifests, two configs, two own layers
            for gone in (b"own", b"own 2"):
                assert await registry.store.stat(Digest.of(gone)) is None
            assert await registry.store.stat(Digest.of(b"shared")) == len(b"shared")
            r = await client.get(f"/v2/team/other/blobs/{sha256(b'shared')}")
            assert r.status_code == 200 and r.content == b"shared"
            # The name can be pushed again.
            await push_image(client, "team/app", "v1", layers=[b"own"])
    finally:
        await registry.close()


async def test_a_bad_name_is_refused(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete("/api/v1/repositories/Bad/Name"), 400, "NAME_INVALID")


@pytest.fixture
async def team(accounts: Accounts) -> None:
    await accounts.add_user("owner", PASSWORD)
    await accounts.add_user("dev", PASSWORD)
    await accounts.add_user("keeper", PASSWORD)
    await accounts.add_namespace("team", public=False, owner="owner")
    await accounts.set_member("team", "dev", "developer")
    await accounts.set_member("team", "keeper", "maintainer")


async def test_maintainers_may_delete_a_repository_and_developers_may_not(
    auth_app: Starlette, team: None
) -> None:
    transport = httpx.ASGITransport(app=auth_app)

    def client(user: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=transport, base_url="http://r.test", auth=TokenAuth(user, PASSWORD)
        )

    async with client("dev") as dev, client("keeper") as keeper:
        await push_image(dev, "team/app", "v1")
        assert_error(await dev.delete("/api/v1/repositories/team/app"), 403, "DENIED")
        r = await keeper.delete("/api/v1/repositories/team/app")
        assert r.status_code == 202, r.text
    async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as anon:
        r = await anon.delete("/api/v1/repositories/team/app")
        assert_error(r, 401, "UNAUTHORIZED")
        r = await anon.delete("/api/v1/repositories/team/app", headers=basic("dev", PASSWORD))
        assert_error(r, 403, "DENIED")


async def test_only_admins_read_the_gc_state_metrics_and_usage_and_owners_theirs(
    auth_app: Starlette, accounts: Accounts, team: None
) -> None:
    await accounts.add_user("root", PASSWORD, admin=True)
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as c:
        for path in ("/api/v1/gc", "/metrics", "/api/v1/usage"):
            assert_error(await c.get(path), 401, "UNAUTHORIZED")
            assert_error(await c.get(path, headers=basic("owner", PASSWORD)), 403, "DENIED")
            assert (await c.get(path, headers=basic("root", PASSWORD))).status_code == 200
        path = "/api/v1/namespaces/team/usage"
        assert_error(await c.get(path), 401, "UNAUTHORIZED")
        assert_error(await c.get(path, headers=basic("dev", PASSWORD)), 403, "DENIED")
        for user in ("owner", "root"):
            assert (await c.get(path, headers=basic(user, PASSWORD))).status_code == 200
