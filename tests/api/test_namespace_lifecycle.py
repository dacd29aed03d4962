"""A push into a namespace that does not exist makes it (private, owned by the pusher,
audited); a refused push or delete says why, in what the caller may see; a namespace's
last owner cannot leave it ownerless."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from registry.metadata import accounts as q
from registry.metadata.database import Database
from tests.api.conftest import PASSWORD
from tests.helpers import assert_error, basic, bearer, get_token, push_blob, push_image

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]


@pytest.fixture
async def people(accounts: Accounts) -> None:
    await accounts.add_user("root", PASSWORD, admin=True)
    for name in ("alice", "bob", "carol"):
        await accounts.add_user(name, PASSWORD)
    await accounts.add_namespace("team", public=False, owner="alice")
    await accounts.set_member("team", "bob", "guest")
    await accounts.set_member("team", "carol", "developer")
    await accounts.add_namespace("open", public=True, owner="alice")


def as_(user: str) -> dict[str, str]:
    return basic(user, PASSWORD)


def client_of(anon: httpx.AsyncClient, user: str) -> httpx.AsyncClient:
    """A client that sends `user`'s Basic credentials with every request."""
    return httpx.AsyncClient(
        transport=anon._transport, base_url=anon.base_url, auth=(user, PASSWORD)
    )


async def namespaces(anon: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await anon.get("/api/v1/namespaces", headers=as_("root"))
    return {each["name"]: each for each in r.json()["namespaces"]}


async def created(anon: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await anon.get("/api/v1/audit", params={"action": "namespace.create"}, headers=as_("root"))
    return r.json()["events"]


async def test_an_admins_first_push_makes_the_namespace(
    anon: httpx.AsyncClient, people: None
) -> None:
    async with client_of(anon, "root") as admin:
        await push_image(admin, "tools/web/frontend", "v1")
        await push_image(admin, "tools/api", "v1")  # into it again: nothing new
        await push_image(admin, "busybox", "latest")  # a single name is library's
    listed = await namespaces(anon)
    assert listed["tools"] == {"name": "tools", "public": False, "members": 1}
    assert listed["library"]["public"] is False
    members = (await anon.get("/api/v1/namespaces/tools/members", headers=as_("root"))).json()
    assert members == {"members": [{"user": "root", "role": "owner"}]}
    made = {event["namespace"]: event for event in await created(anon)}
    assert set(made) >= {"tools", "library"}
    assert made["tools"]["actor"]["name"] == "root"
    assert made["tools"]["detail"] == {
        "public": False,
        "owner": "root",
        "first_push": "tools/web/frontend",
    }
    assert len([e for e in await created(anon) if e["namespace"] == "tools"]) == 1


async def test_first_pushes_at_once_make_the_namespace_once(
    anon: httpx.AsyncClient, people: None
) -> None:
    """The worst interleaving: eight first pushes into one new namespace, each into its
    own repository, in one moment. One makes it; none fails."""
    async with client_of(anon, "root") as admin:
        await asyncio.gather(*(push_image(admin, f"burst/app{i}", "v1") for i in range(8)))
    assert [e["namespace"] for e in await created(anon)].count("burst") == 1
    assert (await namespaces(anon))["burst"]["members"] == 1


async def test_an_open_registry_makes_namespaces_without_an_owner(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await push_image(client, "team/app", "v1")
    db = app.state.registry.db
    async with db.read() as conn:
        assert await q.list_namespaces(conn) == [("team", False, 0)]


async def test_blobs_alone_make_no_namespace(app: Starlette, client: httpx.AsyncClient) -> None:
    await push_blob(client, "team/app", b"a layer, and no manifest yet")
    async with app.state.registry.db.read() as conn:
        assert await q.list_namespaces(conn) == []


def message(response: httpx.Response, status: int = 403, code: str = "DENIED") -> str:
    return str(assert_error(response, status, code)["message"])


async def test_a_refused_push_says_why_without_saying_what_is_hidden(
    anon: httpx.AsyncClient, accounts: Accounts, people: None
) -> None:
    # No member of a private namespace, and a namespace that does not exist: the same.
    await accounts.add_user("dave", PASSWORD)
    hidden = message(await anon.post("/v2/team/app/blobs/uploads/", headers=as_("dave")))
    missing = message(await anon.post("/v2/ghost/app/blobs/uploads/", headers=as_("dave")))
    assert hidden == (
        "namespace 'team' does not exist, or 'dave' is not a member of it: an admin "
        "creates namespaces, and its owners add members"
    )
    assert missing == hidden.replace("'team'", "'ghost'")

    # A guest may pull: its role is no secret to it, nor what push needs.
    guest = message(await anon.post("/v2/team/app/blobs/uploads/", headers=as_("bob")))
    assert guest == (
        "'bob' is a guest of 'team' and may pull in 'team', not push: that needs the "
        "role developer or above; an owner of 'team' can give it"
    )
    # The same through a token, as docker does: /token grants pull, the push says why.
    token = await get_token(anon, "repository:team/app:pull,push", user="bob", password=PASSWORD)
    r = await anon.post("/v2/team/app/blobs/uploads/", headers=bearer(token))
    assert message(r) == guest

    # A developer may push, not delete.
    async with client_of(anon, "carol") as carol:
        digest, _ = await push_image(carol, "team/app", "v1")
    r = await anon.delete(f"/v2/team/app/manifests/{digest}", headers=as_("carol"))
    assert "that needs the role maintainer or above" in message(r)

    # A public namespace: anyone may pull.
    r = await anon.post("/v2/open/app/blobs/uploads/", headers=as_("dave"))
    assert message(r) == "anyone may pull in 'open', not push"

    # A robot: its grants.
    secret = await accounts.add_robot("team+reader", {"team": ["pull"]})
    r = await anon.post("/v2/team/app/blobs/uploads/", headers=basic("robot$team+reader", secret))
    assert message(r) == (
        "'robot$team+reader' may pull in 'team', not push: a robot's grants are set when "
        "it is made; make another"
    )


async def test_the_last_owner_cannot_leave_the_namespace_ownerless(
    anon: httpx.AsyncClient, people: None
) -> None:
    alice = "/api/v1/namespaces/team/members/alice"
    for r in (
        await anon.delete(alice, headers=as_("alice")),
        await anon.put(alice, json={"role": "developer"}, headers=as_("alice")),
        await anon.delete(alice, headers=as_("root")),  # nor an admin, by mistake
    ):
        text = message(r, 409, "CONFLICT")
        assert text.startswith("'alice' is the last owner of 'team': make another member")
    members = (await anon.get("/api/v1/namespaces/team/members", headers=as_("alice"))).json()
    assert {"user": "alice", "role": "owner"} in members["members"]

    r = await anon.put(
        "/api/v1/namespaces/team/members/bob", json={"role": "owner"}, headers=as_("alice")
    )
    assert r.status_code == 204
    assert (await anon.delete(alice, headers=as_("alice"))).status_code == 204

    # A namespace made without an owner takes members freely.
    r = await anon.post("/api/v1/namespaces", json={"name": "shared"}, headers=as_("root"))
    assert r.status_code == 201, r.text
    r = await anon.put(
        "/api/v1/namespaces/shared/members/carol", json={"role": "developer"}, headers=as_("root")
    )
    assert r.status_code == 204


async def warm(db: Database, connections: int) -> None:
    """Open that many pooled connections, so that changes sent at once run at once
    rather than one while the other connects."""

    async def hold() -> None:
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(0.1)

    await asyncio.gather(*(hold() for _ in range(connections)))


async def test_two_owners_demoting_each_other_at_once_leave_one(
    accounts: Accounts, people: None
) -> None:
    """The worst interleaving of the rule: each change alone would keep an owner; both
    at once would leave none. Each holds the namespace's row, so one is refused."""
    await accounts.set_member("team", "bob", "owner")
    await warm(accounts.db, 2)
    results = await asyncio.gather(
        accounts.set_member("team", "alice", "developer"),
        accounts.set_member("team", "bob", "developer"),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1, results
    roles = dict(await accounts.list_members("team"))
    assert sorted(roles.values()).count("owner") == 1
