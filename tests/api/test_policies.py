"""Namespace policies through /api/v1/namespaces/<ns>/policy, and immutable tags: a push
that would move a tag a rule covers, or a delete of it, gets 409 DENIED naming the rule."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from registry.mediatypes import OCI_MANIFEST
from tests.api.conftest import PASSWORD
from tests.helpers import assert_error, basic, push_image, sha256

pytestmark = pytest.mark.anyio


async def set_policy(client: httpx.AsyncClient, namespace: str, **changes: object) -> dict:
    r = await client.patch(f"/api/v1/namespaces/{namespace}/policy", json=changes)
    assert r.status_code == 200, r.text
    return r.json()


async def put(client: httpx.AsyncClient, repo: str, tag: str, body: bytes) -> httpx.Response:
    return await client.put(
        f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )


async def test_a_policy_is_empty_until_set_and_reads_back(client: httpx.AsyncClient) -> None:
    empty = (await client.get("/api/v1/namespaces/team/policy")).json()
    assert empty == {
        "namespace": "team",
        "immutable_tags": [],
        "retention": None,
        "quota_bytes": None,
        "signature_policy": "off",
    }
    retention = {"keep_last": 3, "keep_tags": ["latest"], "older_than_days": 30}
    doc = await set_policy(client, "team", immutable_tags=["v*", "v*"], retention=retention)
    assert doc["immutable_tags"] == ["v*"]
    assert doc["retention"] == retention
    assert (await client.get("/api/v1/namespaces/team/policy")).json() == doc
    # Fields not given stay as they were.
    assert (await set_policy(client, "team", quota_bytes=10**9))["retention"] == retention
    assert (await set_policy(client, "team", retention=None))["retention"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"immutable_tags": "v*"}, "immutable_tags"),
        ({"immutable_tags": [""]}, "immutable_tags"),
        ({"immutable_tags": ["x" * 129]}, "immutable_tags"),
        ({"retention": {}}, "retention"),
        ({"retention": []}, "retention"),
        ({"retention": {"keep_last": -1}}, "retention.keep_last"),
        ({"retention": {"keep_last": True}}, "retention.keep_last"),
        ({"retention": {"older_than_days": 0}}, "retention.older_than_days"),
        ({"retention": {"keep_last": 1, "bogus": 1}}, "retention.bogus"),
        ({"quota_bytes": -5}, "quota_bytes"),
        ({"quota_bytes": "a lot"}, "quota_bytes"),
    ],
)
async def test_bad_policies_are_refused(client: httpx.AsyncClient, body: dict, field: str) -> None:
    error = assert_error(
        await client.patch("/api/v1/namespaces/team/policy", json=body), 400, "INVALID"
    )
    assert error["detail"] == {"field": field}


async def test_bad_requests_to_the_policy_api(client: httpx.AsyncClient) -> None:
    r = await client.patch("/api/v1/namespaces/team/policy", json={"colour": "blue"})
    assert_error(r, 400, "INVALID")
    r = await client.patch(
        "/api/v1/namespaces/team/policy",
        content=b"[1]",
        headers={"Content-Type": "application/json"},
    )
    assert_error(r, 400, "INVALID")
    assert_error(await client.get("/api/v1/namespaces/Team/policy"), 400, "NAME_INVALID")


async def test_an_immutable_tag_is_neither_moved_nor_deleted(client: httpx.AsyncClient) -> None:
    await set_policy(client, "team", immutable_tags=["v*", "release-*"])
    first, body = await push_image(client, "team/app", "v1", layers=[b"first"])
    _, other = await push_image(client, "team/app", "scratch", layers=[b"second"])

    r = await put(client, "team/app", "v1", other)
    error = assert_error(r, 409, "DENIED")
    assert error["detail"] == {"tag": "v1", "rule": "v*"}
    assert "an admin can lift the rule" in error["message"]
    pulled = await client.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert pulled.headers["Docker-Content-Digest"] == first
    # The same manifest again moves nothing: allowed.
    assert (await put(client, "team/app", "v1", body)).status_code == 201
    # Tags no rule covers move and go as before.
    assert (await put(client, "team/app", "latest", body)).status_code == 201
    assert (await put(client, "team/app", "latest", other)).status_code == 201
    assert (await client.delete("/v2/team/app/manifests/latest")).status_code == 202

    for path in ("/v2/team/app/manifests/v1", f"/v2/team/app/manifests/{first}"):
        assert_error(await client.delete(path), 409, "DENIED")
    assert_error(await client.delete("/api/v1/repositories/team/app"), 409, "DENIED")
    # Another namespace is not covered.
    await push_image(client, "other/app", "v1", layers=[b"first"])
    await push_image(client, "other/app", "scratch", layers=[b"second"])
    assert (await put(client, "other/app", "v1", other)).status_code == 201

    await set_policy(client, "team", immutable_tags=[])
    assert (await put(client, "team/app", "v1", other)).status_code == 201
    assert (await client.delete("/v2/team/app/manifests/v1")).status_code == 202


async def test_two_pushes_racing_to_create_an_immutable_tag(client: httpx.AsyncClient) -> None:
    await set_policy(client, "team", immutable_tags=["v*"])
    _, a = await push_image(client, "team/app", "a", layers=[b"a"])
    _, b = await push_image(client, "team/app", "b", layers=[b"b"])
    results = await asyncio.gather(*(put(client, "team/app", "v9", body) for body in (a, b)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201, 409], [r.text for r in results]
    winner = next(body for body, r in zip((a, b), results, strict=True) if r.status_code == 201)
    pulled = await client.get("/v2/team/app/manifests/v9", headers={"Accept": OCI_MANIFEST})
    assert pulled.headers["Docker-Content-Digest"] == sha256(winner)


@pytest.fixture
async def team(accounts: Accounts) -> None:
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_user("owner", PASSWORD)
    await accounts.add_user("dev", PASSWORD)
    await accounts.add_namespace("team", public=False, owner="owner")
    await accounts.set_member("team", "dev", "developer")


async def test_owners_set_policies_and_only_admins_lift_rules_or_set_quotas(
    auth_app: Starlette, team: None
) -> None:
    transport = httpx.ASGITransport(app=auth_app)
    path = "/api/v1/namespaces/team/policy"
    async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as c:
        owner, root, dev = (basic(u, PASSWORD) for u in ("owner", "root", "dev"))
        assert_error(await c.get(path), 401, "UNAUTHORIZED")
        assert_error(await c.get(path, headers=dev), 403, "DENIED")
        r = await c.patch(path, json={"immutable_tags": ["v*"]}, headers=owner)
        assert r.status_code == 200, r.text
        r = await c.patch(path, json={"immutable_tags": []}, headers=owner)
        assert "only an admin may lift" in assert_error(r, 403, "DENIED")["message"]
        assert_error(await c.patch(path, json={"quota_bytes": 5}, headers=owner), 403, "DENIED")
        r = await c.patch(path, json={"retention": {"keep_last": 5}}, headers=owner)
        assert r.status_code == 200
        r = await c.patch(path, json={"immutable_tags": [], "quota_bytes": 5}, headers=root)
        assert r.json()["immutable_tags"] == [] and r.json()["quota_bytes"] == 5
