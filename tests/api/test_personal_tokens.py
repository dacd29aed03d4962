"""Personal access tokens: made by their owner, shown once, stored as a digest, used as
the password of `docker login` (Basic and /token), limited to their scopes within the
owner's roles, revoked at once, never able to manage accounts or make more tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from tests.api.conftest import PASSWORD
from tests.helpers import assert_error, basic, bearer, get_token, push_image

pytestmark = pytest.mark.anyio


@pytest.fixture
async def people(auth_app: Starlette, accounts: Accounts) -> AsyncIterator[httpx.AsyncClient]:
    """root (admin); alice, developer of team and of infra, guest of ops; a client of
    alice's logged in with her password."""
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_user("alice", PASSWORD)
    for namespace, role in (("team", "developer"), ("infra", "developer"), ("ops", "guest")):
        await accounts.add_namespace(namespace, public=False, owner="root")
        await accounts.set_member(namespace, "alice", role)
    transport = httpx.ASGITransport(app=auth_app, client=("10.0.0.7", 40000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", headers=basic("alice", PASSWORD)
    ) as client:
        yield client


async def make_token(client: httpx.AsyncClient, name: str = "ci", **body: Any) -> str:
    body.setdefault("scopes", [{"namespace": "team", "actions": ["pull", "push"]}])
    r = await client.post("/api/v1/me/tokens", json={"name": name, **body})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == name
    token = str(r.json()["token"])
    assert token.startswith("rpat_")
    return token


async def test_a_token_pushes_within_its_scopes_and_the_owners_roles(
    people: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    token = await make_token(
        people,
        scopes=[
            {"namespace": "team", "actions": ["pull", "push"]},
            {"namespace": "o*", "actions": ["pull", "push", "delete"]},
        ],
    )
    # Basic on /v2/, as a simple client: push in team, nothing in infra.
    anon.headers.update(basic("alice", token))
    await push_image(anon, "team/app", "v1")
    r = await anon.head("/v2/infra/app/manifests/v1")
    assert r.status_code == 403
    r = await anon.get("/v2/infra/app/manifests/v1")
    message = assert_error(r, 403, "DENIED")["message"]
    assert "personal access token" in message and "infra" in message
    # /token, as docker asks: the grant is the token's scopes cut by alice's roles (a
    # guest of ops pulls only, whatever the token says).
    del anon.headers["authorization"]
    r = await anon.get(
        "/token",
        params=[
            ("service", "registry"),
            ("scope", "repository:team/app:pull,push,delete"),
            ("scope", "repository:infra/app:pull"),
            ("scope", "repository:ops/app:pull,push"),
        ],
        headers=basic("alice", token),
    )
    assert r.status_code == 200, r.text
    granted = {
        entry["name"]: sorted(entry["actions"])
        for entry in __import__("jwt").decode(
            r.json()["token"], options={"verify_signature": False}
        )["access"]
    }
    assert granted == {"team/app": ["pull", "push"], "ops/app": ["pull"]}


async def test_the_token_is_shown_once_and_stored_as_a_digest(
    people: httpx.AsyncClient, accounts: Accounts, anon: httpx.AsyncClient
) -> None:
    token = await make_token(people, expires_days=7)
    await get_token(anon, "repository:team/app:pull", user="alice", password=token)
    listed = (await people.get("/api/v1/me/tokens")).json()["tokens"]
    assert [t["name"] for t in listed] == ["ci"]
    (shown,) = listed
    assert "token" not in shown and token not in str(listed)
    assert shown["scopes"] == [{"namespace": "team", "actions": ["pull", "push"]}]
    assert shown["expires_at"] and shown["last_used_from"] == "10.0.0.1"
    async with accounts.db.read() as conn:
        stored = [
            row[0] for row in await conn.execute(text("SELECT secret_digest FROM personal_tokens"))
        ]
    secret = token.split("_", 2)[2]  # rpat_<id>_<secret>, whose secret may hold _ too
    assert len(stored) == 1 and secret not in stored[0] and token not in stored[0]


async def test_revoking_holds_at_once_for_basic_logins_tokens_and_refresh_tokens(
    people: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    token = await make_token(people)
    assert (
        await anon.get("/v2/team/app/tags/list", headers=basic("alice", token))
    ).status_code in (
        200,
        404,
    )
    r = await anon.get(
        "/token",
        params={"service": "registry", "offline_token": "true", "scope": "repository:team/a:pull"},
        headers=basic("alice", token),
    )
    refresh = r.json()["refresh_token"]
    form = {"grant_type": "refresh_token", "service": "registry", "refresh_token": refresh}
    again = await anon.post("/token", data={**form, "scope": "repository:team/a:pull,push"})
    assert again.status_code == 200, again.text
    assert again.json()["scope"] == "repository:team/a:pull,push"

    assert (await people.delete("/api/v1/me/tokens/ci")).status_code == 204
    r = await anon.get("/v2/team/app/tags/list", headers=basic("alice", token))
    assert_error(r, 401, "UNAUTHORIZED")
    assert_error(await anon.get("/token", headers=basic("alice", token)), 401, "UNAUTHORIZED")
    assert_error(await anon.post("/token", data=form), 401, "UNAUTHORIZED")
    assert_error(await people.delete("/api/v1/me/tokens/ci"), 404, "NOT_FOUND")


async def test_a_token_never_manages_and_never_acts_as_an_admin(
    auth_app: Starlette, accounts: Accounts, anon: httpx.AsyncClient
) -> None:
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_namespace("team", public=False, owner="root")
    anon.headers.update(basic("root", PASSWORD))
    r = await anon.post(
        "/api/v1/me/tokens",
        json={
            "name": "wide",
            "scopes": [{"namespace": "*", "actions": ["pull", "push", "delete"]}],
        },
    )
    token = r.json()["token"]
    anon.headers.update(basic("root", token))
    assert_error(await anon.get("/api/v1/users"), 403, "DENIED")
    assert_error(await anon.get("/api/v1/namespaces/team/members"), 403, "DENIED")
    r = await anon.post(
        "/api/v1/me/tokens",
        json={"name": "wider", "scopes": [{"namespace": "*", "actions": ["pull"]}]},
    )
    assert "cannot manage tokens" in assert_error(r, 403, "DENIED")["message"]
    me = (await anon.get("/api/v1/me")).json()
    assert me["name"] == "root" and me["admin"] is False
    # An admin's token acts through the admin's memberships, not everywhere.
    assert (await anon.get("/v2/team/app/tags/list")).status_code == 404
    assert (await anon.get("/v2/elsewhere/app/tags/list")).status_code == 403
    # A bearer token made from it is no wider on /api/v1/.
    bearer_token = await get_token(anon, "repository:team/app:pull", user="root", password=token)
    anon.headers.update(bearer(bearer_token))
    assert_error(await anon.get("/api/v1/users"), 403, "DENIED")


async def test_console_refuses_a_token_as_a_password(
    web: httpx.AsyncClient, accounts: Accounts
) -> None:
    token = await accounts.add_token("alice", "ci", [("team", ["pull"])], None)
    page = await web.get("/ui/login")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    r = await web.post("/ui/login", data={"username": "alice", "password": token, "csrf": csrf})
    assert r.status_code in (401, 400) and "personal access tokens are for docker login" in r.text


async def test_expired_unknown_and_malformed_tokens(
    people: httpx.AsyncClient, accounts: Accounts, anon: httpx.AsyncClient
) -> None:
    token = await make_token(people)
    async with accounts.db.write() as conn:
        await conn.execute(text("UPDATE personal_tokens SET expires_at = '2000-01-01 00:00:00'"))
    # Three tries: the failed-login limit of these tests.
    for password in (token, "rpat_999_x", "rpat_x_y"):
        r = await anon.get("/token", headers=basic("alice", password))
        assert_error(r, 401, "UNAUTHORIZED")
    # Someone else's name with alice's token is no login either.
    fresh = await make_token(people, "other")
    assert_error(await anon.get("/token", headers=basic("root", fresh)), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("body", "fault"),
    [
        ({"name": "x", "scopes": []}, None),
        ({"name": "x", "scopes": [{"namespace": "team", "actions": ["fly"]}]}, "actions"),
        ({"name": "x", "scopes": [{"namespace": "Team/../", "actions": ["pull"]}]}, "pattern"),
        ({"name": "<b>", "scopes": [{"namespace": "team", "actions": ["pull"]}]}, "token name"),
        (
            {"name": "x", "scopes": [{"namespace": "t", "actions": ["pull"]}], "expires_days": 0},
            None,
        ),
        (
            {
                "name": "x",
                "scopes": [{"namespace": "t", "actions": ["pull"]}],
                "expires_days": 9999,
            },
            None,
        ),
    ],
)
async def test_bad_token_requests(
    people: httpx.AsyncClient, body: dict[str, Any], fault: str | None
) -> None:
    r = await people.post("/api/v1/me/tokens", json=body)
    error = assert_error(r, 400, "INVALID")
    if fault:
        assert fault in error["message"]


async def test_names_are_unique_per_user_and_admins_revoke_anyones(
    people: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    token = await make_token(people)
    r = await people.post(
        "/api/v1/me/tokens",
        json={"name": "ci", "scopes": [{"namespace": "team", "actions": ["pull"]}]},
    )
    assert_error(r, 409, "CONFLICT")
    anon.headers.update(basic("root", PASSWORD))
    listed = (await anon.get("/api/v1/users/alice/tokens")).json()["tokens"]
    assert [t["name"] for t in listed] == ["ci"]
    assert (await anon.delete("/api/v1/users/alice/tokens/ci")).status_code == 204
    del anon.headers["authorization"]
    assert_error(await anon.get("/token", headers=basic("alice", token)), 401, "UNAUTHORIZED")
    # alice may not list root's.
    assert_error(await people.get("/api/v1/users/root/tokens"), 403, "DENIED")


async def test_logins_say_their_source(people: httpx.AsyncClient, anon: httpx.AsyncClient) -> None:
    token = await make_token(people)
    await get_token(anon, "repository:team/app:pull", user="alice", password=token)
    r = await anon.get("/token", headers=basic("alice", "rpat_1_wrong"))
    assert r.status_code == 401
    anon.headers.update(basic("root", PASSWORD))
    events = (await anon.get("/api/v1/audit", params={"action": "login", "n": 100})).json()[
        "events"
    ]
    sources = {(e["actor"]["name"], e["outcome"], e["detail"]["source"]) for e in events}
    assert ("alice", "success", "token") in sources
    assert ("alice", "failure", "token") in sources
    assert ("alice", "success", "local") in sources
