"""Replication remotes (issue 34, item 1) against real registries: CNCF Distribution
(Debian's docker-registry, no auth) and another instance of this registry with token
auth. A remote is checked when it is made; a bad URL, an unreachable host, TLS that
fails and refused credentials are a 400 that says which; the password is sealed and
never shown; an owner's remote may not be the registry's own network."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from registry.config import Settings
from tests.api.conftest import OTHER_ADMIN_PASSWORD, PASSWORD
from tests.helpers import assert_error, basic, started
from tests.peers.distribution import Distribution
from tests.peers.registry import RegistryProcess
from tests.peers.tools import free_port

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    server = Distribution(tmp_path_factory.mktemp("distribution")).start()
    yield server
    server.stop()


@pytest.fixture
async def root(auth_app: Starlette, accounts: Accounts) -> httpx.AsyncClient:
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_user("olga", PASSWORD)
    await accounts.add_namespace("team", public=False, owner="olga")
    transport = httpx.ASGITransport(app=auth_app)
    return httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", headers=basic("root", PASSWORD)
    )


async def test_an_admins_remote_is_checked_kept_and_removed(
    root: httpx.AsyncClient, distribution: Distribution
) -> None:
    r = await root.post("/api/v1/remotes", json={"name": "dist", "url": distribution.url + "/"})
    assert r.status_code == 201, r.text
    assert r.json()["url"] == distribution.url and r.json()["namespace"] == ""
    assert r.json()["has_password"] is False
    listed = (await root.get("/api/v1/remotes")).json()["remotes"]
    assert [x["name"] for x in listed] == ["dist"]
    assert (await root.post("/api/v1/remotes/dist/test")).status_code == 204
    again = await root.post("/api/v1/remotes", json={"name": "dist", "url": distribution.url})
    assert_error(again, 409, "CONFLICT")
    assert (await root.delete("/api/v1/remotes/dist")).status_code == 204
    assert_error(await root.post("/api/v1/remotes/dist/test"), 404, "NOT_FOUND")
    assert_error(await root.delete("/api/v1/remotes/dist"), 404, "NOT_FOUND")


async def test_credentials_go_through_the_token_dance_and_are_sealed(
    root: httpx.AsyncClient, other: RegistryProcess, accounts: Accounts
) -> None:
    body = {"name": "other", "url": other.url, "username": "admin"}
    r = await root.post("/api/v1/remotes", json={**body, "password": "not it"})
    assert "refused the credentials of 'admin'" in assert_error(r, 400, "INVALID")["message"]
    r = await root.post("/api/v1/remotes", json={**body, "password": OTHER_ADMIN_PASSWORD})
    assert r.status_code == 201, r.text
    assert r.json()["has_password"] is True
    assert OTHER_ADMIN_PASSWORD not in r.text
    assert OTHER_ADMIN_PASSWORD not in (await root.get("/api/v1/remotes")).text
    async with accounts.db.read() as conn:
        stored = (await conn.execute(text("SELECT secret FROM remotes"))).scalar_one()
    assert stored.startswith("v1.") and OTHER_ADMIN_PASSWORD not in stored
    events = (await root.get("/api/v1/audit", params={"action": "remote.create"})).text
    assert "other" in events and OTHER_ADMIN_PASSWORD not in events
    assert (await root.post("/api/v1/remotes/other/test")).status_code == 204
    # A password without a username is no credential.
    r = await root.post("/api/v1/remotes", json={"name": "x", "url": other.url, "password": "p"})
    assert "without a username" in assert_error(r, 400, "INVALID")["message"]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://127.0.0.1/", "expected an http:// or https:// URL"),
        ("http://user:pw@127.0.0.1:5000", "no credentials in the URL"),
        ("http://127.0.0.1:5000/v2/team", "the registry's root only"),
        ("not a url", "expected an http:// or https:// URL"),
    ],
)
async def test_bad_urls(root: httpx.AsyncClient, url: str, words: str) -> None:
    r = await root.post("/api/v1/remotes", json={"name": "bad", "url": url})
    assert words in assert_error(r, 400, "INVALID")["message"]


async def test_unreachable_tls_failures_and_bad_cas_are_said(
    root: httpx.AsyncClient, distribution: Distribution
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    r = await root.post("/api/v1/remotes", json={"name": "gone", "url": nowhere})
    assert "cannot be reached" in assert_error(r, 400, "INVALID")["message"]
    # TLS to a plain HTTP server: the handshake fails, and the answer says so.
    tls = distribution.url.replace("http://", "https://")
    r = await root.post("/api/v1/remotes", json={"name": "tls", "url": tls})
    message = assert_error(r, 400, "INVALID")["message"]
    assert "cannot be reached" in message and "SSL" in message
    r = await root.post(
        "/api/v1/remotes", json={"name": "ca", "url": tls, "ca_pem": "-----BEGIN nonsense"}
    )
    assert "ca_pem: not PEM certificates" in assert_error(r, 400, "INVALID")["message"]
    assert (await root.get("/api/v1/remotes")).json()["remotes"] == []


async def test_an_owners_remote_may_not_be_the_registrys_own_network(
    root: httpx.AsyncClient, auth_app: Starlette, distribution: Distribution
) -> None:
    olga = basic("olga", PASSWORD)
    body = {"name": "dist", "url": distribution.url}
    r = await root.post("/api/v1/namespaces/team/remotes", json=body, headers=olga)
    message = assert_error(r, 400, "INVALID")["message"]
    assert "127.0.0.1 is the non-public address" in message
    assert "replication.allow_private_targets" in message
    # Not in another's namespace, not the registry's; an unknown namespace is a 404.
    assert_error(await root.post("/api/v1/remotes", json=body, headers=olga), 403, "DENIED")
    # Nor an admin's in a namespace: the registry's own remotes (/api/v1/remotes) may.
    r = await root.post("/api/v1/namespaces/olga/remotes", json=body)
    assert "non-public address" in assert_error(r, 400, "INVALID")["message"]
    r = await root.post("/api/v1/namespaces/nowhere/remotes", json=body)
    assert_error(r, 404, "NOT_FOUND")


async def test_allow_private_targets_lets_owners_reach_them(
    make_settings: Callable[..., Settings], distribution: Distribution, tmp_path: Path
) -> None:
    settings = make_settings(auth_enabled="true", replication_allow_private_targets="true")
    async with started(settings) as (application, client):
        accounts: Accounts = application.state.registry.auth.accounts
        await accounts.add_user("olga", PASSWORD)
        await accounts.add_namespace("team", public=False, owner="olga")
        client.headers.update(basic("olga", PASSWORD))
        body = {"name": "dist", "url": distribution.url}
        r = await client.post("/api/v1/namespaces/team/remotes", json=body)
        assert r.status_code == 201, r.text
        listed = (await client.get("/api/v1/namespaces/team/remotes")).json()["remotes"]
        assert [(x["namespace"], x["name"]) for x in listed] == [("team", "dist")]
        assert (await client.post("/api/v1/namespaces/team/remotes/dist/test")).status_code == 204
        assert (await client.delete("/api/v1/namespaces/team/remotes/dist")).status_code == 204
        # A namespace's remotes go with it: one made later with its name has none.
        assert (await client.post("/api/v1/namespaces/team/remotes", json=body)).status_code == 201
        await accounts.remove_namespace("team")
        await accounts.add_namespace("team", public=False, owner="olga")
        assert (await client.get("/api/v1/namespaces/team/remotes")).json()["remotes"] == []
