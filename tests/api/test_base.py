from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import load_settings
from registry.metadata import migrate
from tests.helpers import assert_error
from tests.peers.tools import free_port

pytestmark = pytest.mark.anyio


async def test_version_check(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert r.json() == {}


async def test_head_version_check(client: httpx.AsyncClient) -> None:
    r = await client.head("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_unknown_route_is_a_spec_error(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v2/foo/nothing-here"), 404, "UNSUPPORTED")


async def test_wrong_method_is_unsupported(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/v2/foo/tags/list"), 405, "UNSUPPORTED")
    assert_error(await client.patch("/v2/foo/manifests/latest"), 405, "UNSUPPORTED")


@pytest.mark.parametrize(
    "path",
    [
        "/v2/UPPER/tags/list",
        "/v2/a//b/tags/list",
        "/v2/-lead/manifests/latest",
        "/v2/a..b/blobs/uploads/",
        "/v2/a/%2E%2E/etc/blobs/sha256:" + "0" * 64,
        "/v2/" + "a" * 256 + "/tags/list",
    ],
)
async def test_invalid_names(client: httpx.AsyncClient, path: str) -> None:
    method = "POST" if path.endswith("uploads/") else "GET"
    r = await client.request(method, path)
    assert_error(r, 400, "NAME_INVALID")


async def test_database_down_is_a_clear_503(tmp_path: Path) -> None:
    environ = {
        "REGISTRY_DATA_DIR": str(tmp_path),
        "REGISTRY_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/none",
        "REGISTRY_AUTH_ENABLED": "false",
    }
    app = create_app(load_settings(None, environ))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        error = assert_error(await c.get("/v2/team/app/manifests/v1"), 503, "UNAVAILABLE")
        assert_error(await c.post("/v2/team/app/blobs/uploads/"), 503, "UNAVAILABLE")
        # Load balancers and container healthchecks see it too; the process is alive.
        assert_error(await c.get("/ready"), 503, "UNAVAILABLE")
        assert (await c.get("/health")).status_code == 200
    assert "metadata database unavailable" in error["message"]
    await app.state.registry.close()


async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_ready_checks_the_schema_and_the_store(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    r = await client.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "schema": migrate.head()}
    registry = app.state.registry
    async with registry.db.write() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    error = assert_error(await client.get("/ready"), 503, "UNAVAILABLE")
    assert "registry migrate" in error["message"] and error["detail"]["database"] == "0001"
    # A newer release's revision: this replica serves on while an upgrade replaces it.
    async with registry.db.write() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999_newer'"))
    r = await client.get("/ready")
    assert r.status_code == 200 and r.json()["schema"] == "9999_newer"
    async with registry.db.write() as conn:
        await conn.execute(text(f"UPDATE alembic_version SET version_num = '{migrate.head()}'"))
    assert (await client.get("/ready")).status_code == 200
    if registry.settings.storage.driver == "filesystem":
        uploads = registry.settings.storage_root / "uploads"
        uploads.rename(uploads.with_name("moved"))  # a volume that did not mount
        try:
            error = assert_error(await client.get("/ready"), 503, "UNAVAILABLE")
            assert "missing or not writable" in error["message"]
        finally:
            uploads.with_name("moved").rename(uploads)
