"""Robots across namespaces (Harbor's system robots): an admin gives one robot actions in
several namespaces, by name and by pattern; a pattern covers namespaces made later;
owners keep their namespace robots and cannot make these."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from tests.api.conftest import PASSWORD
from tests.helpers import assert_error, basic, push_image

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]


@pytest.fixture
async def admin(auth_app: Starlette, accounts: Accounts) -> AsyncIterator[httpx.AsyncClient]:
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_user("olga", PASSWORD)
    for namespace in ("team-a", "team-b", "ops"):
        await accounts.add_namespace(namespace, public=False, owner="olga")
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", headers=basic("root", PASSWORD)
    ) as client:
        yield client


async def test_one_robot_in_several_namespaces_by_name_and_pattern(
    admin: httpx.AsyncClient, accounts: Accounts, anon: httpx.AsyncClient
) -> None:
    body = {
        "name": "release",
        "permissions": [
            {"namespace": "ops", "actions": ["pull", "push"]},
            {"namespace": "team-*", "actions": ["pull"]},
            {"namespace": "team-a", "actions": ["push"]},
        ],
        "expires_days": 30,
    }
    r = await admin.post("/api/v1/robots", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "robot$release"
    robot = basic("robot$release", r.json()["secret"])
    await push_image(admin, "team-b/app", "v1")
    anon.headers.update(robot)
    await push_image(anon, "ops/tool", "v1")
    await push_image(anon, "team-a/app", "v1")  # push by name, pull by the pattern
    assert (await anon.get("/v2/team-b/app/manifests/v1")).status_code == 200
    refused = await anon.post("/v2/team-b/app/blobs/uploads/")
    assert "may pull in 'team-b', not push" in assert_error(refused, 403, "DENIED")["message"]
    # A namespace made later that the pattern matches: pulls there too; others not.
    await accounts.add_namespace("team-c", public=False, owner="olga")
    await push_image(admin, "team-c/app", "v1")
    await push_image(admin, "olga/app", "v1")
    assert (await anon.get("/v2/team-c/app/manifests/v1")).status_code == 200
    assert_error(await anon.get("/v2/olga/app/manifests/v1"), 403, "DENIED")
    listed = (await admin.get("/api/v1/robots")).json()["robots"]
    (release,) = [r for r in listed if r["name"] == "robot$release"]
    permissions = {p["namespace"]: sorted(p["actions"]) for p in release["permissions"]}
    assert permissions == {"ops": ["pull", "push"], "team-*": ["pull"], "team-a": ["push"]}
    assert release["expires_at"]
    # The catalog lists what the pattern reaches.
    del anon.headers["authorization"]
    r = await anon.get("/v2/_catalog", headers=robot)
    assert set(r.json()["repositories"]) == {"ops/tool", "team-a/app", "team-b/app", "team-c/app"}
    # Removed: refused at once.
    assert (await admin.delete("/api/v1/robots/robot$release")).status_code == 204
    assert_error(await anon.get("/v2/ops/tool/manifests/v1", headers=robot), 401, "UNAUTHORIZED")


async def test_a_pattern_matches_names_not_like_wildcards(
    admin: httpx.AsyncClient, accounts: Accounts, anon: httpx.AsyncClient
) -> None:
    """An underscore in a pattern is itself, not LIKE's one-character wildcard."""
    await accounts.add_namespace("a_b", public=False, owner="olga")
    await accounts.add_namespace("axb", public=False, owner="olga")
    r = await admin.post(
        "/api/v1/robots",
        json={"name": "exact", "permissions": [{"namespace": "a_?", "actions": ["pull"]}]},
    )
    robot = basic("robot$exact", r.json()["secret"])
    await push_image(admin, "a_b/app", "v1")
    await push_image(admin, "axb/app", "v1")
    assert (await anon.get("/v2/a_b/app/manifests/v1", headers=robot)).status_code == 200
    assert_error(await anon.get("/v2/axb/app/manifests/v1", headers=robot), 403, "DENIED")


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (
            {"name": "x", "permissions": [{"namespace": "Team/*", "actions": ["pull"]}]},
            400,
            "pattern",
        ),
        ({"name": "x", "permissions": [{"namespace": "ops", "actions": ["fly"]}]}, 400, "actions"),
        (
            {"name": "x", "permissions": [{"namespace": "nowhere", "actions": ["pull"]}]},
            404,
            "nowhere",
        ),
        ({"name": "ops+x", "permissions": [{"namespace": "ops", "actions": ["pull"]}]}, 400, "+"),
        ({"name": "x", "permissions": []}, 400, ""),
    ],
)
async def test_bad_robots(
    admin: httpx.AsyncClient, body: dict[str, object], status: int, words: str
) -> None:
    r = await admin.post("/api/v1/robots", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["errors"][0]["message"]


async def test_owners_keep_namespace_robots_and_cannot_make_these(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    anon.headers.update(basic("olga", PASSWORD))
    body = {"name": "x", "permissions": [{"namespace": "*", "actions": ["pull"]}]}
    assert_error(await anon.post("/api/v1/robots", json=body), 403, "DENIED")
    assert_error(await anon.get("/api/v1/robots"), 403, "DENIED")
    r = await anon.post("/api/v1/namespaces/ops/robots", json={"name": "ci", "actions": ["pull"]})
    assert r.status_code == 201 and r.json()["name"] == "robot$ops+ci"
    # The namespace's own list shows its robots, not an admin's that reach it.
    await admin.post(
        "/api/v1/robots",
        json={"name": "all", "permissions": [{"namespace": "*", "actions": ["pull"]}]},
    )
    names = [r["name"] for r in (await anon.get("/api/v1/namespaces/ops/robots")).json()["robots"]]
    assert names == ["robot$ops+ci"]
