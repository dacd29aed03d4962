"""The web console in process (registry/web/): login and its cookies, CSRF, session
fixation, permissions by URL, escaping, framing, open redirects. The same pages in a
real browser: tests/e2e/test_console_browser.py."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from registry.metadata.models import now
from tests.api.conftest import PASSWORD
from tests.api.console import EVIL, csrf_of, log_in
from tests.helpers import basic, push_image

pytestmark = pytest.mark.anyio


async def test_home_and_login_redirects(web: httpx.AsyncClient) -> None:
    assert (await web.get("/")).headers["location"] == "/ui/"
    r = await web.get("/ui/r/team/app/-/tags")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=%2Fui%2Fr%2Fteam%2Fapp%2F-%2Ftags"
    r = await log_in(web, "alice", "/ui/r/team/app/-/tags")
    assert r.status_code == 303 and r.headers["location"] == "/ui/r/team/app/-/tags"
    cookie = r.headers["set-cookie"]
    assert "registry_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain HTTP here; behind TLS it is Secure
    page = await web.get("/ui/r/team/app/-/tags")
    assert page.status_code == 200 and "v1" in page.text


async def test_the_cookie_is_secure_behind_tls(auth_app: Starlette, web: httpx.AsyncClient) -> None:
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://registry.test") as c:
        form = await c.get("/ui/login")
        assert "Secure" in form.headers["set-cookie"]


async def test_wrong_password_and_robots_are_refused(
    web: httpx.AsyncClient, accounts: Accounts
) -> None:
    form = await web.get("/ui/login")
    r = await web.post(
        "/ui/login", data={"username": "alice", "password": "nope", "csrf": csrf_of(form.text)}
    )
    assert r.status_code == 401 and "incorrect username or password" in r.text
    assert "registry_session" not in r.headers.get("set-cookie", "")
    secret = await accounts.add_robot("team+ci", {"team": ["pull"]}, None)
    r = await web.post(
        "/ui/login",
        data={"username": "robot$team+ci", "password": secret, "csrf": csrf_of(form.text)},
    )
    assert r.status_code == 401 and "robot" in r.text


async def test_login_needs_its_csrf_cookie(web: httpx.AsyncClient) -> None:
    form = await web.get("/ui/login")
    token = csrf_of(form.text)
    web.cookies.clear()  # a form posted from another site carries no cookie of ours
    r = await web.post("/ui/login", data={"username": "alice", "password": PASSWORD, "csrf": token})
    assert r.status_code == 200 and "registry_session" not in r.headers.get("set-cookie", "")
    await web.get("/ui/login")
    r = await web.post(
        "/ui/login", data={"username": "alice", "password": PASSWORD, "csrf": "forged"}
    )
    assert r.status_code == 403


async def test_a_planted_session_cookie_is_never_adopted(web: httpx.AsyncClient) -> None:
    web.cookies.set("registry_session", "chosen-by-the-attacker", path="/ui/")
    r = await log_in(web, "alice")
    issued = r.cookies.get("registry_session")
    assert issued and issued != "chosen-by-the-attacker"
    web.cookies.clear()
    web.cookies.set("registry_session", "chosen-by-the-attacker", path="/ui/")
    assert (await web.get("/ui/")).status_code == 303


async def test_forms_without_the_token_are_refused(web: httpx.AsyncClient) -> None:
    await log_in(web, "alice")
    r = await web.post("/ui/r/team/app/-/tags/v1/delete", data={"csrf": "forged"})
    assert r.status_code == 403 and "another site" in r.text
    r = await web.post("/ui/r/team/app/-/tags/v1/delete")
    assert r.status_code == 403
    confirm = await web.get("/ui/r/team/app/-/tags/v1/delete")
    assert "Delete team/app:v1?" in confirm.text
    r = await web.post("/ui/r/team/app/-/tags/v1/delete", data={"csrf": csrf_of(confirm.text)})
    assert r.status_code == 303 and r.headers["location"] == "/ui/r/team/app/-/tags"
    # (Not "v1" anywhere below the table: the page's CSRF token once held those letters.)
    assert "/ui/r/team/app/-/tags/v1/delete" not in (await web.get("/ui/r/team/app/-/tags")).text


async def test_a_user_cannot_reach_another_namespace_by_url(web: httpx.AsyncClient) -> None:
    await log_in(web, "eve")
    listing = await web.get("/ui/")
    assert "team/app" not in listing.text and "alice/own" not in listing.text
    for path in (
        "/ui/r/team/app/-/tags",
        "/ui/r/team/none/-/tags",
        "/ui/r/team/app/-/manifests/v1",
        "/ui/r/team/app/-/tags/v1/delete",
    ):
        r = await web.get(path)
        assert r.status_code == 403, path
    confirm_token = csrf_of(listing.text)  # eve's own token: still no right to delete
    r = await web.post("/ui/r/team/app/-/tags/v1/delete", data={"csrf": confirm_token})
    assert r.status_code == 403


async def test_attacker_text_is_shown_as_text(web: httpx.AsyncClient) -> None:
    await log_in(web, "root")
    page = await web.get("/ui/r/team/app/-/manifests/v1")
    assert page.status_code == 200
    assert EVIL not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert page.headers["x-frame-options"] == "DENY"


async def test_next_never_leads_off_the_console(web: httpx.AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/ui/..//evil", "/\\evil"):
        r = await log_in(web, "alice", target)
        assert r.headers["location"] == "/ui/dashboard", target
        web.cookies.clear()


async def test_logout_ends_the_session(web: httpx.AsyncClient) -> None:
    await log_in(web, "alice")
    page = await web.get("/ui/")
    secret = web.cookies.get("registry_session")
    r = await web.post("/ui/logout", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    web.cookies.set("registry_session", secret or "", path="/ui/")
    assert (await web.get("/ui/")).status_code == 303


async def test_a_new_password_ends_the_session(web: httpx.AsyncClient, accounts: Accounts) -> None:
    await log_in(web, "alice")
    assert (await web.get("/ui/")).status_code == 200
    await accounts.set_password("alice", "a brand new password")
    assert (await web.get("/ui/")).status_code == 303


async def test_an_open_registry_needs_no_login(client: httpx.AsyncClient) -> None:
    await push_image(client, "team/app", "v1")
    page = await client.get("/ui/")
    assert page.status_code == 200 and "team/app" in page.text
    confirm = await client.get("/ui/r/team/app/-/tags/v1/delete")
    r = await client.post("/ui/r/team/app/-/tags/v1/delete", data={"csrf": csrf_of(confirm.text)})
    assert r.status_code == 303
    r = await client.post("/ui/r/team/app/-/tags/v1/delete", data={"csrf": "forged"})
    assert r.status_code == 403


async def test_an_owner_manages_members_and_robots(
    web: httpx.AsyncClient, accounts: Accounts
) -> None:
    await log_in(web, "alice")
    page = await web.get("/ui/namespaces/team")
    assert page.status_code == 200 and "Namespace team" in page.text
    token = csrf_of(page.text)
    r = await web.post(
        "/ui/namespaces/team/members", data={"csrf": token, "user": "eve", "role": "developer"}
    )
    assert r.status_code == 303
    assert ("eve", "developer") in await accounts.list_members("team")
    r = await web.post(
        "/ui/namespaces/team/members", data={"csrf": token, "user": "eve", "role": "king"}
    )
    assert r.status_code == 400
    form = [("csrf", token), ("name", "ci"), ("actions", "pull"), ("actions", "push")]
    r = await web.post(
        "/ui/namespaces/team/robots",
        content=urlencode([*form, ("expires_days", "30")]),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    secret = re.search(r'<code id="robot-secret">([^<]+)</code>', r.text)
    assert secret, r.text
    token_answer = await web.get(
        "/token",
        params={"service": "registry", "scope": "repository:team/app:pull,push"},
        headers=basic("robot$team+ci", secret[1]),
    )
    assert token_answer.status_code == 200
    again = await web.get("/ui/namespaces/team")
    assert secret[1] not in again.text and "robot$team+ci" in again.text
    r = await web.post("/ui/namespaces/team/robots/robot$team+ci/remove", data={"csrf": token})
    assert r.status_code == 303
    assert [x.name for x in await accounts.list_robots("team")] == []
    r = await web.post("/ui/namespaces/team/members/eve/remove", data={"csrf": token})
    assert r.status_code == 303
    assert ("eve", "developer") not in await accounts.list_members("team")


async def test_others_cannot_manage_a_namespace(web: httpx.AsyncClient, accounts: Accounts) -> None:
    await accounts.set_member("team", "eve", "maintainer")
    await log_in(web, "eve")
    assert (await web.get("/ui/namespaces/team")).status_code == 403
    token = csrf_of((await web.get("/ui/")).text)
    r = await web.post(
        "/ui/namespaces/team/members", data={"csrf": token, "user": "eve", "role": "owner"}
    )
    assert r.status_code == 403
    assert ("eve", "maintainer") in await accounts.list_members("team")
    for path in ("/ui/users", "/ui/status"):
        assert (await web.get(path)).status_code == 403, path
    r = await web.post("/ui/namespaces", data={"csrf": token, "name": "mine"})
    assert r.status_code == 403
    listed = (await web.get("/ui/namespaces")).text
    assert "team" in listed and "New namespace" not in listed


async def test_a_hold_on_garbage_collection_shows_on_the_status_page(
    web: httpx.AsyncClient, auth_app: Starlette
) -> None:
    await log_in(web, "root")
    gc = auth_app.state.registry.gc
    assert "Deletions are held" not in (await web.get("/ui/status")).text
    until = await gc.hold(now() + timedelta(hours=2), "cli:ops@host")
    held = f"Deletions are held until {until:%Y-%m-%d %H:%M} UTC (`registry gc release`"
    assert held in (await web.get("/ui/status")).text
    await gc.hold(None)
    assert "Deletions are held" not in (await web.get("/ui/status")).text


async def test_an_admin_manages_users_and_namespaces(
    web: httpx.AsyncClient, accounts: Accounts
) -> None:
    await log_in(web, "root")
    page = await web.get("/ui/users")
    assert page.status_code == 200 and "alice" in page.text
    token = csrf_of(page.text)
    r = await web.post(
        "/ui/users", data={"csrf": token, "name": "carol", "password": "carols password"}
    )
    assert r.status_code == 303
    r = await web.post(
        "/ui/users", data={"csrf": token, "name": "carol", "password": "carols password"}
    )
    assert r.status_code == 409
    assert (await web.post("/ui/users/carol/disable", data={"csrf": token})).status_code == 303
    assert [u.disabled for u in await accounts.list_users() if u.name == "carol"] == [True]
    assert (await web.post("/ui/users/carol/promote", data={"csrf": token})).status_code == 400
    assert (await web.post("/ui/users/root/remove", data={"csrf": token})).status_code == 400
    assert (await web.post("/ui/users/carol/remove", data={"csrf": token})).status_code == 303
    r = await web.post(
        "/ui/namespaces", data={"csrf": token, "name": "ops", "owner": "alice", "public": "on"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/namespaces/ops"
    assert ("ops", True, 1) in await accounts.list_namespaces()
    status = await web.get("/ui/status")
    assert status.status_code == 200 and "Garbage collection" in status.text


async def test_delete_a_repository_after_confirming(web: httpx.AsyncClient) -> None:
    await log_in(web, "alice")
    confirm = await web.get("/ui/r/team/app/-/delete")
    assert "Delete the repository team/app?" in confirm.text
    r = await web.post("/ui/r/team/app/-/delete", data={"csrf": csrf_of(confirm.text)})
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    assert "team/app" not in (await web.get("/ui/")).text
    web.cookies.clear()
    await log_in(web, "eve")
    token = csrf_of((await web.get("/ui/")).text)
    r = await web.post("/ui/r/alice/own/-/delete", data={"csrf": token})
    assert r.status_code == 403
