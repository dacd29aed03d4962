"""Group roles and robots across namespaces in the console: a namespace's owners map
groups to roles there (not to admin), admins map them anywhere and to admin on the users
page, which also says how each user logs in and lists the robots that act in several
namespaces; mappings from the settings are shown and not removable; a group's name is
shown as text."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from tests.api.console import EVIL, csrf_of, log_in
from tests.helpers import basic

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]
AUTH_SETTINGS = {
    "auth_group_roles": "[{source: oidc, group: auditors, role: guest, namespace: team}]"
}


async def test_an_owner_maps_groups_in_their_namespace(
    web: httpx.AsyncClient, accounts: Accounts, auth_app: Starlette
) -> None:
    await auth_app.state.registry.auth.configure()  # as the app's start does
    await log_in(web, "alice")
    shown = await web.get("/ui/namespaces/team")
    assert "<code>auditors</code>" in shown.text and "from the settings" in shown.text
    form = {"csrf": csrf_of(shown.text), "source": "ldap", "group": EVIL, "role": "developer"}
    r = await web.post("/ui/namespaces/team/group-roles", data=form)
    assert r.status_code == 303 and r.headers["location"] == "/ui/namespaces/team#group-roles"
    shown = await web.get("/ui/namespaces/team")
    assert EVIL not in shown.text and "&lt;script&gt;" in shown.text
    (mapping,) = [g for g in await accounts.list_group_roles("team") if g.origin == "api"]
    assert (mapping.source, mapping.group, mapping.role) == ("ldap", EVIL.lower(), "developer")
    # Not admin, and not elsewhere.
    r = await web.post("/ui/namespaces/team/group-roles", data={**form, "role": "admin"})
    assert r.status_code == 403 and "only an admin" in r.text
    r = await web.post("/ui/group-roles", data={**form, "namespace": "team"})
    assert r.status_code == 403
    # Settings' mappings stay; the owner's go.
    config = next(g for g in await accounts.list_group_roles("team") if g.origin == "config")
    r = await web.post(f"/ui/namespaces/team/group-roles/{config.id}/remove", data=form)
    assert r.status_code == 409 and "auth.group_roles" in r.text
    r = await web.post(f"/ui/namespaces/team/group-roles/{mapping.id}/remove", data=form)
    assert r.status_code == 303
    assert [g.origin for g in await accounts.list_group_roles("team")] == ["config"]


async def test_admins_map_groups_anywhere_and_see_how_users_log_in(
    web: httpx.AsyncClient, accounts: Accounts
) -> None:
    await accounts.external_login(
        "ldap", "uid=lena,ou=people,dc=example,dc=org", "lena", frozenset({"cn=ops"})
    )
    await log_in(web, "root")
    shown = await web.get("/ui/users")
    form = {"csrf": csrf_of(shown.text), "source": "ldap", "group": "CN=Ops", "role": "admin"}
    r = await web.post("/ui/group-roles", data={**form, "namespace": ""})
    assert r.status_code == 303 and r.headers["location"] == "/ui/users#group-roles"
    shown = await web.get("/ui/users")
    row = shown.text.split("<td>lena</td>")[1].split("</tr>")[0]
    assert "<td>LDAP</td>" in row and "<td>through a group</td>" in row
    assert "Reset the password of lena" not in shown.text  # the directory keeps it
    assert "Reset the password of alice" in shown.text
    assert "<code>cn=ops</code>" in shown.text and "every namespace" in shown.text
    r = await web.post("/ui/group-roles", data={**form, "role": "owner", "namespace": "nowhere"})
    assert r.status_code == 404 and "nowhere" in r.text


async def test_admins_make_and_remove_robots_across_namespaces(
    web: httpx.AsyncClient, accounts: Accounts, anon: httpx.AsyncClient
) -> None:
    await log_in(web, "root")
    shown = await web.get("/ui/users")
    assert "No robots across namespaces." in shown.text
    form = {"csrf": csrf_of(shown.text), "name": "release", "expires_days": "30"}
    r = await web.post("/ui/robots", data={**form, "permissions": "team=pull,push\nt*=pull"})
    assert r.status_code == 200, r.text
    secret = r.text.split('<code id="robot-secret">')[1].split("</code>")[0]
    assert "<code>t*</code>: pull" in r.text and "<code>team</code>: pull, push" in r.text
    token = await anon.get("/token", headers=basic("robot$release", secret))
    assert token.status_code == 200
    for permissions, name, words in (
        ("team=fly", "x", "actions must be some of"),
        ("", "x", "at least one namespace"),
        ("team=pull", "team+x", "belong to a namespace"),
    ):
        r = await web.post("/ui/robots", data={**form, "name": name, "permissions": permissions})
        assert words in r.text
    r = await web.post("/ui/robots/robot$release/remove", data={"csrf": form["csrf"]})
    assert r.status_code == 303 and r.headers["location"] == "/ui/users#robots"
    assert (await anon.get("/token", headers=basic("robot$release", secret))).status_code == 401
    # Only admins.
    await log_in(web, "alice")
    alice = await web.get("/ui/account")
    r = await web.post(
        "/ui/robots", data={**form, "csrf": csrf_of(alice.text), "permissions": "*=pull"}
    )
    assert r.status_code == 403
