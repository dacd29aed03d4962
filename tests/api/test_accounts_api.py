"""/api/v1/: admins manage users and namespaces; owners manage members and robots."""

from __future__ import annotations

import httpx
import jwt
import pytest

from registry.auth.accounts import Accounts
from tests.api.conftest import PASSWORD
from tests.helpers import assert_error, basic, get_token

pytestmark = pytest.mark.anyio


@pytest.fixture
async def people(accounts: Accounts) -> None:
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_user("alice", PASSWORD)
    await accounts.add_user("bob", PASSWORD)
    await accounts.add_namespace("team", public=False, owner="alice")


def as_(user: str) -> dict[str, str]:
    return basic(user, PASSWORD)


async def test_admin_manages_users(anon: httpx.AsyncClient, people: None) -> None:
    r = await anon.post(
        "/api/v1/users", json={"name": "carol", "password": "carols-password"}, headers=as_("root")
    )
    assert r.status_code == 201, r.text
    listed = (await anon.get("/api/v1/users", headers=as_("root"))).json()["users"]
    assert {"name": "carol", "admin": False, "disabled": False} in listed
    assert (await anon.get("/token", headers=basic("carol", "carols-password"))).status_code == 200

    r = await anon.patch("/api/v1/users/carol", json={"disabled": True}, headers=as_("root"))
    assert r.status_code == 204
    r = await anon.get("/token", headers=basic("carol", "carols-password"))
    assert_error(r, 401, "UNAUTHORIZED")
    assert (await anon.delete("/api/v1/users/carol", headers=as_("root"))).status_code == 204
    assert_error(await anon.delete("/api/v1/users/carol", headers=as_("root")), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "alice", "password": "long enough"}, 409, "CONFLICT"),
        ({"name": "team", "password": "long enough"}, 409, "CONFLICT"),
        ({"name": "Not Valid", "password": "long enough"}, 400, "INVALID"),
        ({"name": "dave", "password": "short"}, 400, "INVALID"),
        ({"name": "dave"}, 400, "INVALID"),
        ({"name": "dave", "password": 12345678}, 400, "INVALID"),
        ({"name": None, "password": None}, 400, "INVALID"),
        ({"name": "dave", "password": "long enough", "admin": None}, 400, "INVALID"),
        (["not", "an", "object"], 400, "INVALID"),
    ],
)
async def test_bad_user_requests(
    anon: httpx.AsyncClient, people: None, body: object, status: int, code: str
) -> None:
    r = await anon.post("/api/v1/users", json=body, headers=as_("root"))
    assert_error(r, status, code)


async def test_bodies_that_are_not_json_objects(anon: httpx.AsyncClient, people: None) -> None:
    deep = b'{"name": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    for content in (b"{not json", b"x" * 70_000, deep, b'{"name": NaN}', b"\xff\xfe"):
        headers = {**as_("root"), "Content-Type": "application/json"}
        r = await anon.post("/api/v1/users", content=content, headers=headers)
        assert_error(r, 400, "INVALID")


async def test_a_body_not_sent_as_json_is_refused_and_changes_nothing(
    anon: httpx.AsyncClient, people: None
) -> None:
    """What a web page can make a browser send to another host with the Basic credentials
    it keeps (a form, a text/plain fetch) is refused before it is read: a text/plain POST
    once made an admin."""
    body = b'{"name": "mallory", "password": "hunter2hunter2", "admin": true}'
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ):
        headers = as_("root") | ({"Content-Type": content_type} if content_type else {})
        r = await anon.post("/api/v1/users", content=body, headers=headers)
        error = assert_error(r, 415, "UNSUPPORTED")
        assert error["detail"] == {"content_type": content_type}
        r = await anon.patch("/api/v1/users/alice", content=b'{"admin": true}', headers=headers)
        assert_error(r, 415, "UNSUPPORTED")
    users = (await anon.get("/api/v1/users", headers=as_("root"))).json()["users"]
    assert "mallory" not in {u["name"] for u in users}
    assert {"name": "alice", "admin": False} in [
        {"name": u["name"], "admin": u["admin"]} for u in users
    ]
    # JSON with a charset is JSON.
    headers = as_("root") | {"Content-Type": "application/json; charset=utf-8"}
    r = await anon.post("/api/v1/users", content=body, headers=headers)
    assert r.status_code == 201, r.text


async def test_only_admins_manage_users_and_namespaces(
    anon: httpx.AsyncClient, people: None
) -> None:
    for method, path in (
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("PATCH", "/api/v1/users/bob"),
        ("GET", "/api/v1/namespaces"),
        ("POST", "/api/v1/namespaces"),
        ("PATCH", "/api/v1/namespaces/team"),
    ):
        assert_error(await anon.request(method, path, headers=as_("alice")), 403, "DENIED")
        r = await anon.request(method, path)
        assert_error(r, 401, "UNAUTHORIZED")
        assert r.headers["WWW-Authenticate"].startswith("Bearer ")
    # An anonymous token is no login either.
    token = await get_token(anon)
    r = await anon.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"})
    assert_error(r, 401, "UNAUTHORIZED")


async def test_admin_makes_a_namespace_public(anon: httpx.AsyncClient, people: None) -> None:
    r = await anon.post(
        "/api/v1/namespaces", json={"name": "open", "owner": "bob"}, headers=as_("root")
    )
    assert r.status_code == 201
    token = await get_token(anon, "repository:open/app:pull")
    assert jwt.decode(token, options={"verify_signature": False})["access"] == []
    r = await anon.patch("/api/v1/namespaces/open", json={"public": True}, headers=as_("root"))
    assert r.status_code == 204
    listed = (await anon.get("/api/v1/namespaces", headers=as_("root"))).json()["namespaces"]
    assert {"name": "open", "public": True, "members": 1} in listed
    r = await anon.get(
        "/v2/open/app/tags/list",
        headers={"Authorization": f"Bearer {await get_token(anon, 'repository:open/app:pull')}"},
    )
    assert_error(r, 404, "NAME_UNKNOWN")


async def test_owner_manages_members(anon: httpx.AsyncClient, people: None) -> None:
    path = "/api/v1/namespaces/team/members/bob"
    assert_error(
        await anon.put(path, json={"role": "developer"}, headers=as_("bob")), 403, "DENIED"
    )
    r = await anon.put(path, json={"role": "developer"}, headers=as_("alice"))
    assert r.status_code == 204
    r = await anon.get("/api/v1/namespaces/team/members", headers=as_("alice"))
    assert r.json() == {
        "members": [{"user": "alice", "role": "owner"}, {"user": "bob", "role": "developer"}]
    }
    # The new role is in bob's next token.
    token = await get_token(anon, "repository:team/app:pull,push", user="bob", password=PASSWORD)
    r = await anon.post("/v2/team/app/blobs/uploads/", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 202
    # A developer does not manage members.
    r = await anon.put(
        "/api/v1/namespaces/team/members/root", json={"role": "guest"}, headers=as_("bob")
    )
    assert_error(r, 403, "DENIED")
    assert_error(
        await anon.put(path, json={"role": "emperor"}, headers=as_("alice")), 400, "INVALID"
    )
    r = await anon.put(
        "/api/v1/namespaces/team/members/nobody", json={"role": "guest"}, headers=as_("alice")
    )
    assert_error(r, 404, "NOT_FOUND")
    assert (await anon.delete(path, headers=as_("alice"))).status_code == 204
    assert_error(await anon.delete(path, headers=as_("alice")), 404, "NOT_FOUND")


async def test_owner_manages_robots(anon: httpx.AsyncClient, people: None) -> None:
    r = await anon.post(
        "/api/v1/namespaces/team/robots",
        json={"name": "ci", "actions": ["pull", "push"], "expires_days": 30},
        headers=as_("alice"),
    )
    assert r.status_code == 201, r.text
    name, secret = r.json()["name"], r.json()["secret"]
    assert name == "robot$team+ci"
    listed = (await anon.get("/api/v1/namespaces/team/robots", headers=as_("alice"))).json()
    assert [(x["name"], x["actions"]) for x in listed["robots"]] == [(name, ["pull", "push"])]
    assert listed["robots"][0]["expires_at"]

    token = await get_token(
        anon, "repository:team/app:pull,push,delete", "repository:bob/app:pull", user=name,
        password=secret,
    )  # fmt: skip
    r = await anon.post("/v2/team/app/blobs/uploads/", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 202
    assert_error(
        await anon.get("/v2/bob/app/tags/list", headers={"Authorization": f"Bearer {token}"}),
        403,
        "DENIED",
    )
    # A robot does not manage robots, nor does a non-owner.
    for headers in (basic(name, secret), as_("bob")):
        r = await anon.post(
            "/api/v1/namespaces/team/robots", json={"name": "x", "actions": ["pull"]},
            headers=headers,
        )  # fmt: skip
        assert_error(r, 403, "DENIED")
    assert_error(
        await anon.delete(f"/api/v1/namespaces/bob/robots/{name}", headers=as_("bob")),
        404,
        "NOT_FOUND",
    )
    assert (
        await anon.delete(f"/api/v1/namespaces/team/robots/{name}", headers=as_("alice"))
    ).status_code == 204
    assert_error(await anon.get("/token", headers=basic(name, secret)), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "ci", "actions": ["fly"]}, "INVALID"),
        ({"name": "ci", "actions": []}, "INVALID"),
        ({"name": "C I", "actions": ["pull"]}, "INVALID"),
        ({"name": "ci", "actions": "pull"}, "INVALID"),
        ({"name": "ci", "actions": [{"pull": 1}]}, "INVALID"),
        ({"name": "ci", "actions": ["pull"], "expires_days": 10**30}, "INVALID"),
        ({"name": "ci", "actions": ["pull"], "expires_days": -1}, "INVALID"),
        ({"name": "ci", "actions": ["pull"], "expires_days": True}, "INVALID"),
    ],
)
async def test_bad_robot_requests(
    anon: httpx.AsyncClient, people: None, body: dict[str, object], code: str
) -> None:
    r = await anon.post("/api/v1/namespaces/team/robots", json=body, headers=as_("alice"))
    assert_error(r, 400, code)


async def test_an_expired_robot_cannot_log_in(anon: httpx.AsyncClient, people: None) -> None:
    r = await anon.post(
        "/api/v1/namespaces/team/robots",
        json={"name": "old", "actions": ["pull"], "expires_days": 0},
        headers=as_("alice"),
    )
    body = r.json()
    r = await anon.get("/token", headers=basic(body["name"], body["secret"]))
    assert_error(r, 401, "UNAUTHORIZED")


async def test_account_api_is_absent_with_auth_off(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/users"), 404, "UNSUPPORTED")


async def test_lists_are_paged_with_a_link_header(anon: httpx.AsyncClient, people: None) -> None:
    admin = as_("root")
    r = await anon.get("/api/v1/users", params={"n": 2}, headers=admin)
    assert r.status_code == 200, r.text
    assert [u["name"] for u in r.json()["users"]] == ["alice", "bob"]
    assert r.headers["link"] == '</api/v1/users?n=2&last=bob>; rel="next"'
    r = await anon.get("/api/v1/users", params={"n": 2, "last": "bob"}, headers=admin)
    assert [u["name"] for u in r.json()["users"]] == ["root"]
    assert "link" not in r.headers
    r = await anon.get("/api/v1/users", params={"n": "0"}, headers=admin)
    assert_error(r, 400, "INVALID")
    assert r.json()["errors"][0]["detail"] == {"field": "n"}


async def test_a_refused_caller_learns_nothing_of_the_body(
    anon: httpx.AsyncClient, people: None
) -> None:
    """Access comes first: a malformed body from someone who may not add users is 403."""
    r = await anon.post("/api/v1/users", content=b"{not json", headers=as_("alice"))
    assert_error(r, 403, "DENIED")
    r = await anon.post("/api/v1/users", content=b"{not json")
    assert r.status_code == 401
