"""An upgrade without downtime, on PostgreSQL: the previous release serves with data in
it; this code's `registry migrate` runs while that replica keeps answering pulls; then
the old replica still pulls and pushes on the new schema, a replica of this code serves
everything either stored (an upload begun on the old one included, and the old one's
tokens), and `registry check` finds nothing wrong.

The previous release is RELEASE from this repository's history, run from `git archive`
with this environment's packages: the last commit of the first phase (issues 2 to 7),
at schema 0005, so the upgrade runs every migration since. It holds as long as
migrations only add (tables, nullable columns or ones with defaults, indexes): a
migration that drops or renames what released code reads must come in two releases,
the code that stops using it first (README, "Upgrades")."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import TokenAuth, bearer, get_token, push_image, sha256
from tests.peers.postgres import PostgresServer
from tests.peers.registry import RegistryProcess
from tests.peers.tools import unavailable

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "db78a4312437237db2552c172914b4885202c1bd"
PASSWORD = "upgrade-admin-password"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's `registry` package and migrations, from git."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", RELEASE, "registry", "migrations"],
        capture_output=True,
    )
    if archive.returncode != 0:
        unavailable(
            f"git cannot read the previous release {RELEASE[:12]} (a clone with history is "
            f"needed): {archive.stderr.decode().strip()}"
        )
    folder = tmp_path_factory.mktemp("release")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


@pytest.fixture
def database(postgres: PostgresServer) -> Iterator[str]:
    name = f"registry_upgrade_{os.getpid()}"
    postgres.execute(f"CREATE DATABASE {name}")  # empty: the old code makes its schema
    yield postgres.url_for(name)
    postgres.drop_database(name)


async def pull_until(client: httpx.AsyncClient, paths: list[str], done: asyncio.Event) -> list[int]:
    """Manifest GETs one after another until `done`; their statuses."""
    statuses = []
    while not done.is_set():
        for path in paths:
            statuses.append((await client.get(path)).status_code)
        await asyncio.sleep(0.01)
    return statuses


async def test_an_upgrade_while_the_previous_release_serves(
    release: Path, database: str, tmp_path: Path
) -> None:
    # What replicas share: the database, the blob folder, the token key.
    shared = {
        "REGISTRY_DATABASE_URL": database,
        "REGISTRY_STORAGE_ROOT": str(tmp_path / "storage"),
        "REGISTRY_AUTH_KEY_FILE": str(tmp_path / "token.key"),
        "REGISTRY_AUTH_ENABLED": "true",
        "REGISTRY_ADMIN_PASSWORD": PASSWORD,
        "REGISTRY_LOG_LEVEL": "info",
    }
    old = RegistryProcess(tmp_path / "old", shared, code=release).start()
    new = RegistryProcess(tmp_path / "new", shared)
    try:
        auth = TokenAuth("admin", PASSWORD)
        async with httpx.AsyncClient(base_url=old.url, auth=auth, timeout=30) as before:
            pushed = {
                f"admin/app{i}": await push_image(before, f"admin/app{i}", "v1") for i in range(3)
            }
            # An upload the old replica begins and this code's finishes.
            data = os.urandom(300_000)
            started = await before.post("/v2/admin/inflight/blobs/uploads/")
            assert started.status_code == 202, started.text
            half = await before.patch(
                started.headers["location"],
                content=data[:100_000],
                headers={"Content-Range": "0-99999", "Content-Type": "application/octet-stream"},
            )
            assert half.status_code == 202, half.text
            old_token = await get_token(
                before, "repository:admin/app0:pull", user="admin", password=PASSWORD
            )

            # This code's migrations, while the old replica answers pulls throughout.
            paths = [f"/v2/{repo}/manifests/v1" for repo in pushed]
            done = asyncio.Event()
            pulling = asyncio.create_task(pull_until(before, paths, done))
            migrated = await asyncio.to_thread(new.cli_result, "migrate")
            done.set()
            statuses = await pulling
            assert migrated.returncode == 0, migrated.stderr
            assert statuses and set(statuses) == {200}, statuses

            # The old code on the new schema: it pulls what it had and pushes more.
            for repo, (digest, body) in pushed.items():
                r = await before.get(f"/v2/{repo}/manifests/v1")
                assert r.content == body and r.headers["docker-content-digest"] == digest
            pushed["admin/after"] = await push_image(before, "admin/after", "v1")

        new.start()
        assert new.get("/ready").status_code == 200
        async with httpx.AsyncClient(base_url=new.url, auth=auth, timeout=30) as after:
            for repo, (digest, body) in pushed.items():
                r = await after.get(f"/v2/{repo}/manifests/v1")
                assert r.status_code == 200, r.text
                assert r.content == body and r.headers["docker-content-digest"] == digest
            catalog = (await after.get("/v2/_catalog")).json()["repositories"]
            assert set(pushed) <= set(catalog)
            rest = await after.put(
                half.headers["location"],
                params={"digest": sha256(data)},
                content=data[100_000:],
                headers={
                    "Content-Range": "100000-299999",
                    "Content-Type": "application/octet-stream",
                },
            )
            assert rest.status_code == 201, rest.text
            r = await after.get(f"/v2/admin/inflight/blobs/{sha256(data)}")
            assert r.content == data
        # A token the old replica gave is good on the new one (the same key and claims).
        async with httpx.AsyncClient(base_url=new.url) as bare:
            r = await bare.get("/v2/admin/app0/manifests/v1", headers=bearer(old_token))
            assert r.status_code == 200, r.text
        checked = new.cli_result("check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        new.stop()
        old.stop()
