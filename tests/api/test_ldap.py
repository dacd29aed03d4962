"""LDAP logins against a real slapd: search-then-bind with a service account, accounts
made at the first login, groups mapped to roles (from the settings and the API), group
changes at the next token request, no takeover of local accounts, no filter injection,
disabled users refused (refresh tokens too), a directory that is down answered with 503
while local admins still log in, StartTLS and LDAPS checked against a CA."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.auth import service
from registry.auth.accounts import Accounts
from registry.config import Settings
from tests.api.conftest import PASSWORD
from tests.helpers import assert_error, basic, push_image, started
from tests.peers.ldap import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd, group_dn
from tests.peers.tools import free_port

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]

ENABLED_ONLY = "(&(objectClass=inetOrgPerson)(uid={username})(!(employeeType=disabled)))"
GROUP_ROLES = [
    {"source": "ldap", "group": group_dn("developers"), "role": "developer", "namespace": "team"},
    {"source": "ldap", "group": group_dn("Admins").upper(), "role": "admin"},
]


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Slapd]:
    """A directory of each test's own (0.3 s to start and fill)."""
    server = Slapd(tmp_path / "ldap").start()
    server.add_user("alice", "alice in ldap", ("developers", "admins"))
    server.add_user("bob", "bob in ldap", ("developers", "ops-team"))
    server.add_user("carol", "carol in ldap")
    server.add_user("dave", "dave in ldap", ("developers",), disabled=True)
    server.add_user("team", "a clash with a namespace")
    yield server
    server.stop()


def ldap_env(server: Slapd, **extra: str) -> dict[str, str]:
    return {
        "auth_enabled": "true",
        "auth_login_attempts": "50",
        "auth_ldap_url": server.url,
        "auth_ldap_bind_dn": SERVICE_DN,
        "auth_ldap_bind_password": SERVICE_PASSWORD,
        "auth_ldap_user_base": PEOPLE,
        "auth_ldap_user_filter": ENABLED_ONLY,
        "auth_ldap_group_base": GROUPS,
        "auth_ldap_timeout_seconds": "1",
        "auth_group_roles": json.dumps(GROUP_ROLES),
        **extra,
    }


@pytest.fixture
async def ldap_app(
    make_settings: Callable[..., Settings], directory: Slapd
) -> AsyncIterator[Starlette]:
    application = create_app(make_settings(**ldap_env(directory)))
    async with application.router.lifespan_context(application):
        accounts: Accounts = application.state.registry.auth.accounts
        await accounts.add_user("root", PASSWORD, admin=True)
        await accounts.add_user("carol", PASSWORD)
        await accounts.add_namespace("team", public=False, owner="root")
        yield application


@pytest.fixture
async def anon(ldap_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ldap_app, client=("10.0.0.5", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        yield c


async def granted(client: httpx.AsyncClient, user: str, password: str, *scopes: str) -> Any:
    """What /token grants `user`: {repository: [actions]}, or the error answer."""
    query = [("service", "registry"), *(("scope", scope) for scope in scopes)]
    r = await client.get("/token", params=query, headers=basic(user, password))
    if r.status_code != 200:
        return r
    claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
    return {entry["name"]: sorted(entry["actions"]) for entry in claims["access"]}


async def test_a_first_login_makes_the_account_and_its_groups_give_roles(
    anon: httpx.AsyncClient,
) -> None:
    scope = "repository:team/app:pull,push,delete"
    assert await granted(anon, "bob", "bob in ldap", scope) == {"team/app": ["pull", "push"]}
    me = (await anon.get("/api/v1/me", headers=basic("bob", "bob in ldap"))).json()
    assert me["admin"] is False
    assert me["groups"] == [group_dn("developers"), group_dn("ops-team")]
    assert {"namespace": "team", "role": "developer", "group": group_dn("developers")} in me[
        "roles"
    ]
    # Their personal namespace is theirs, as a local user's.
    assert {"namespace": "bob", "role": "owner", "group": None} in me["roles"]
    # A mapping written in upper case in the settings matches: DNs are compared in
    # lower case. alice is an admin through her group.
    anon.headers.update(basic("alice", "alice in ldap"))
    assert (await anon.get("/api/v1/me")).json()["admin"] is True
    assert (await anon.get("/api/v1/users")).status_code == 200
    # Basic on /v2/, as docker login without a token server: a push through the group.
    await push_image(anon, "team/app", "v1")


async def test_a_group_change_takes_effect_at_the_next_token_request(
    anon: httpx.AsyncClient, directory: Slapd
) -> None:
    directory.add_user("erin", "erin in ldap", ("ops-team",))
    scope = "repository:team/app:pull,push"
    assert await granted(anon, "erin", "erin in ldap", scope) == {}
    # team's owner maps ops-team through the API: from the next token request on.
    root = basic("root", PASSWORD)
    body = {"source": "ldap", "group": group_dn("ops-team"), "role": "developer"}
    r = await anon.put("/api/v1/namespaces/team/group-roles", json=body, headers=root)
    assert r.status_code == 204, r.text
    assert await granted(anon, "erin", "erin in ldap", scope) == {"team/app": ["pull", "push"]}
    # A token with push names the group behind it in the audit.
    events = (await anon.get("/api/v1/audit", params={"action": "token"}, headers=root)).json()
    assert any(
        f"{group_dn('ops-team')}: developer in team" in e["detail"].get("through_groups", [])
        for e in events["events"]
    )
    # erin leaves the group in the directory: the next request has no push.
    directory.leave("erin", "ops-team")
    assert await granted(anon, "erin", "erin in ldap", scope) == {}
    # A group role of owner manages the namespace as a member owner does.
    body = {"source": "ldap", "group": group_dn("ops-team"), "role": "owner"}
    assert (
        await anon.put("/api/v1/group-roles", json={**body, "namespace": "team"}, headers=root)
    ).status_code == 204
    bob = basic("bob", "bob in ldap")
    assert (await anon.get("/token", headers=bob)).status_code == 200  # groups read afresh
    r = await anon.put("/api/v1/namespaces/team/members/carol", json={"role": "guest"}, headers=bob)
    assert r.status_code == 204, r.text
    listed = (await anon.get("/api/v1/namespaces/team/group-roles", headers=root)).json()
    origins = {(g["group"], g["origin"]) for g in listed["group_roles"]}
    assert origins == {(group_dn("developers"), "config"), (group_dn("ops-team"), "api")}
    # Settings' mappings are changed in the settings only.
    config_id = next(g["id"] for g in listed["group_roles"] if g["origin"] == "config")
    r = await anon.delete(f"/api/v1/namespaces/team/group-roles/{config_id}", headers=root)
    assert "auth.group_roles" in assert_error(r, 409, "CONFLICT")["message"]


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("alice", "wrong"),
        ("alice", ""),
        ("nobody", "alice in ldap"),
        ("*", "alice in ldap"),
        ("alice)(uid=*", "alice in ldap"),
        ("al*", "alice in ldap"),
        ("dave", "dave in ldap"),
    ],
)
async def test_refused_logins_and_filter_injection(
    anon: httpx.AsyncClient, user: str, password: str
) -> None:
    r = await anon.get("/token", headers=basic(user, password))
    assert_error(r, 401, "UNAUTHORIZED")
    events = (
        await anon.get(
            "/api/v1/audit",
            params={"action": "login", "outcome": "failure"},
            headers=basic("root", PASSWORD),
        )
    ).json()["events"]
    assert [e["detail"]["source"] for e in events] == ["ldap"]


async def test_a_directory_never_takes_over_a_local_account_or_a_namespace(
    anon: httpx.AsyncClient,
) -> None:
    # carol is local here: her directory password is no password of hers.
    assert_error(
        await anon.get("/token", headers=basic("carol", "carol in ldap")), 401, "UNAUTHORIZED"
    )
    assert (await anon.get("/token", headers=basic("carol", PASSWORD))).status_code == 200
    # uid=team would be named after an existing namespace.
    r = await anon.get("/token", headers=basic("team", "a clash with a namespace"))
    message = assert_error(r, 401, "UNAUTHORIZED")["message"]
    assert "already exists" in message and "never merged" in message


async def test_a_user_disabled_in_the_directory_loses_refresh_tokens(
    anon: httpx.AsyncClient, directory: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Asked again at every token request, not once a minute (the cache of a process).
    monkeypatch.setattr(service, "SOURCE_RECHECK_SECONDS", 0)
    directory.add_user("frank", "frank in ldap", ("developers",))
    params = {"service": "registry", "offline_token": "true", "scope": "repository:team/a:push"}
    r = await anon.get("/token", params=params, headers=basic("frank", "frank in ldap"))
    refresh = r.json()["refresh_token"]
    form = {"grant_type": "refresh_token", "service": "registry", "refresh_token": refresh}
    form["scope"] = "repository:team/a:pull,push"
    assert (await anon.post("/token", data=form)).json()["scope"] == "repository:team/a:pull,push"
    directory.disable("frank")
    r = await anon.post("/token", data=form)
    assert "no longer in the LDAP directory" in assert_error(r, 401, "UNAUTHORIZED")["message"]
    assert_error(
        await anon.get("/token", headers=basic("frank", "frank in ldap")), 401, "UNAUTHORIZED"
    )


async def test_a_directory_that_is_down_answers_503_and_local_admins_still_log_in(
    anon: httpx.AsyncClient, directory: Slapd
) -> None:
    directory.pause()
    try:
        r = await anon.get("/token", headers=basic("bob", "bob in ldap"))
        message = assert_error(r, 503, "UNAVAILABLE")["message"]
        assert f"127.0.0.1:{directory.port}" in message and "local admins" in message
        assert (await anon.get("/token", headers=basic("root", PASSWORD))).status_code == 200
    finally:
        directory.resume()
    assert (await anon.get("/token", headers=basic("bob", "bob in ldap"))).status_code == 200


async def test_a_directory_that_refuses_connections_or_the_service_account(
    make_settings: Callable[..., Settings], directory: Slapd
) -> None:
    for env, words in (
        ({"auth_ldap_url": f"ldap://127.0.0.1:{free_port()}"}, "cannot be reached"),
        ({"auth_ldap_bind_password": "not the password"}, "refused the service account"),
    ):
        async with started(make_settings(**ldap_env(directory, **env))) as (_, client):
            r = await client.get("/token", headers=basic("bob", "bob in ldap"))
            assert words in assert_error(r, 503, "UNAVAILABLE")["message"]
            assert "not the password" not in r.text


@pytest.mark.parametrize("transport_security", ["start_tls", "ldaps"])
async def test_starttls_and_ldaps_with_the_directorys_ca(
    make_settings: Callable[..., Settings], directory: Slapd, transport_security: str
) -> None:
    secure = (
        {"auth_ldap_start_tls": "true"}
        if transport_security == "start_tls"
        else {"auth_ldap_url": directory.ldaps_url}
    )
    for ca, status in ((str(directory.cert), 200), ("/etc/ssl/certs/ca-certificates.crt", 503)):
        env = ldap_env(directory, auth_ldap_ca_file=ca, **secure)
        async with started(make_settings(**env)) as (_, client):
            r = await client.get("/token", headers=basic("bob", "bob in ldap"))
            assert r.status_code == status, r.text


async def test_local_logins_for_admins_only(
    make_settings: Callable[..., Settings], directory: Slapd, tmp_path: Path
) -> None:
    async with started(make_settings(**ldap_env(directory, auth_local_login="admins"))) as (
        application,
        client,
    ):
        accounts: Accounts = application.state.registry.auth.accounts
        await accounts.add_user("root", PASSWORD, admin=True)
        await accounts.add_user("carol", PASSWORD)
        r = await client.get("/token", headers=basic("carol", PASSWORD))
        assert "local logins are for admins only" in assert_error(r, 401, "UNAUTHORIZED")["message"]
        assert (await client.get("/token", headers=basic("root", PASSWORD))).status_code == 200
        assert (await client.get("/token", headers=basic("bob", "bob in ldap"))).status_code == 200


async def test_groups_from_the_users_memberof_attribute(
    make_settings: Callable[..., Settings], directory: Slapd
) -> None:
    """group_attribute: memberOf reads the groups from the user's own entry (the memberof
    overlay fills it), with no group search."""
    env = ldap_env(directory, auth_ldap_group_attribute="memberOf", auth_ldap_group_base="")
    async with started(make_settings(**env)) as (application, client):
        accounts: Accounts = application.state.registry.auth.accounts
        await accounts.add_namespace("team", public=False)
        scope = {"service": "registry", "scope": "repository:team/app:pull,push"}
        r = await client.get("/token", params=scope, headers=basic("bob", "bob in ldap"))
        assert r.status_code == 200
        groups, _ = await accounts.roles_of("bob")
        assert groups == [group_dn("developers"), group_dn("ops-team")]
        claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
        assert claims["access"][0]["actions"] == ["pull", "push"]
