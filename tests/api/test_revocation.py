"""Revocation is immediate on every replica: two apps on one database, one changing
accounts, the other serving a client whose Basic login it has remembered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.auth.accounts import Accounts
from registry.config import Settings
from tests.api.conftest import PASSWORD
from tests.helpers import assert_error, basic, push_image

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a different horse"


@pytest.fixture
async def replicas(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[Starlette, Starlette]]:
    first = create_app(make_settings(auth_enabled="true"))
    second = create_app(make_settings(auth_enabled="true"))
    yield first, second
    await first.state.registry.close()
    await second.state.registry.close()


@pytest.fixture
def accounts(replicas: tuple[Starlette, Starlette]) -> Accounts:
    """Account changes go through the first replica."""
    return replicas[0].state.registry.auth.accounts


@pytest.fixture
async def other(replicas: tuple[Starlette, Starlette]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the second replica."""
    transport = httpx.ASGITransport(app=replicas[1])
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        yield c


@pytest.fixture
async def team(accounts: Accounts, other: httpx.AsyncClient) -> None:
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_user("alice", PASSWORD)
    await accounts.add_namespace("team", public=False, owner="root")
    await accounts.set_member("team", "alice", "developer")
    other.headers.update(basic("root", PASSWORD))
    await push_image(other, "team/app", "v1")
    del other.headers["Authorization"]


async def pull(client: httpx.AsyncClient, user: str, password: str = PASSWORD) -> int:
    r = await client.get("/v2/team/app/manifests/v1", headers=basic(user, password))
    return r.status_code


async def test_disabling_and_deleting_a_user(
    accounts: Accounts, other: httpx.AsyncClient, team: None
) -> None:
    assert await pull(other, "alice") == 200  # remembered by the second replica now
    await accounts.set_user("alice", disabled=True)
    r = await other.get("/v2/team/app/manifests/v1", headers=basic("alice", PASSWORD))
    assert "disabled or removed" in assert_error(r, 401, "UNAUTHORIZED")["message"]
    await accounts.set_user("alice", disabled=False)
    assert await pull(other, "alice") == 200
    await accounts.remove_user("alice")
    assert await pull(other, "alice") == 401


async def test_a_new_password(accounts: Accounts, other: httpx.AsyncClient, team: None) -> None:
    assert await pull(other, "alice") == 200
    await accounts.set_password("alice", NEW_PASSWORD)
    assert await pull(other, "alice") == 401
    assert await pull(other, "alice", NEW_PASSWORD) == 200
    # And the old one is not remembered again by a later success of the new one.
    assert await pull(other, "alice") == 401


async def test_a_change_of_role(accounts: Accounts, other: httpx.AsyncClient, team: None) -> None:
    start = "/v2/team/app/blobs/uploads/"
    assert (await other.post(start, headers=basic("alice", PASSWORD))).status_code == 202
    await accounts.set_member("team", "alice", "guest")
    assert_error(await other.post(start, headers=basic("alice", PASSWORD)), 403, "DENIED")
    assert await pull(other, "alice") == 200
    await accounts.remove_member("team", "alice")
    assert await pull(other, "alice") == 403


async def test_an_admin_demoted(accounts: Accounts, other: httpx.AsyncClient, team: None) -> None:
    as_root = basic("root", PASSWORD)
    assert (await other.get("/api/v1/users", headers=as_root)).status_code == 200
    alices = "/v2/alice/app/tags/list"
    assert_error(await other.get(alices, headers=as_root), 404, "NAME_UNKNOWN")
    await accounts.set_user("root", admin=False)
    assert_error(await other.get("/api/v1/users", headers=as_root), 403, "DENIED")
    # Not a member of alice's namespace: the admin flag was its only way in.
    assert_error(await other.get(alices, headers=as_root), 403, "DENIED")


async def test_a_robot_deleted_or_expired(
    accounts: Accounts, other: httpx.AsyncClient, team: None
) -> None:
    secret = await accounts.add_robot("team+ci", {"team": ["pull"]})
    assert await pull(other, "robot$team+ci", secret) == 200
    await accounts.remove_robot("robot$team+ci")
    assert await pull(other, "robot$team+ci", secret) == 401

    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    secret = await accounts.add_robot("team+short", {"team": ["pull"]}, soon)
    assert await pull(other, "robot$team+short", secret) == 200
    await asyncio.sleep((soon - datetime.now(UTC)).total_seconds() + 0.1)
    assert await pull(other, "robot$team+short", secret) == 401


@pytest.mark.parametrize("change", ["disable", "delete", "password"])
async def test_refresh_tokens_stop_at_once(
    accounts: Accounts, other: httpx.AsyncClient, team: None, change: str
) -> None:
    r = await other.get(
        "/token",
        params={"service": "registry", "offline_token": "true"},
        headers=basic("alice", PASSWORD),
    )
    refresh = r.json()["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": "registry"}
    assert (await other.post("/token", data=form)).status_code == 200
    if change == "disable":
        await accounts.set_user("alice", disabled=True)
    elif change == "delete":
        await accounts.remove_user("alice")
    else:
        await accounts.set_password("alice", NEW_PASSWORD)
    assert_error(await other.post("/token", data=form), 401, "UNAUTHORIZED")


async def test_a_robots_refresh_token_stops_when_it_is_removed(
    accounts: Accounts, other: httpx.AsyncClient, team: None
) -> None:
    secret = await accounts.add_robot("team+ci", {"team": ["pull"]})
    form = {
        "grant_type": "password",
        "username": "robot$team+ci",
        "password": secret,
        "access_type": "offline",
        "service": "registry",
    }
    refresh = (await other.post("/token", data=form)).json()["refresh_token"]
    again = {"grant_type": "refresh_token", "refresh_token": refresh, "service": "registry"}
    assert (await other.post("/token", data=again)).status_code == 200
    await accounts.remove_robot("robot$team+ci")
    assert_error(await other.post("/token", data=again), 401, "UNAUTHORIZED")
