"""Account pages: a user changes their own password (the current one checked within the
failed-login limit; every session of theirs ends, this one too), an admin resets
another's; the wrong current password, a short or mistyped new one are said on the page."""

from __future__ import annotations

import httpx
import pytest

from registry.auth.accounts import Accounts
from tests.api.conftest import PASSWORD
from tests.api.console import csrf_of, log_in
from tests.helpers import basic

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]
NEW = "a brand new passphrase"


async def change(web: httpx.AsyncClient, **form: str) -> httpx.Response:
    shown = await web.get("/ui/account")
    assert shown.status_code == 200, shown.text
    return await web.post("/ui/account", data={"csrf": csrf_of(shown.text), **form})


async def test_a_user_changes_their_password_and_logs_in_again(
    web: httpx.AsyncClient, accounts: Accounts
) -> None:
    await log_in(web, "alice")
    r = await change(web, current="wrong password", new=NEW, repeat=NEW)
    assert r.status_code == 401 and "The current password is wrong." in r.text
    r = await change(web, current=PASSWORD, new=NEW, repeat=NEW + "x")
    assert r.status_code == 400 and "differ" in r.text
    r = await change(web, current=PASSWORD, new="short", repeat="short")
    assert r.status_code == 400 and "at least 8 characters" in r.text
    r = await change(web, current=PASSWORD, new=NEW, repeat=NEW)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?changed=1"
    assert (await web.get("/ui/account")).status_code == 303  # this session ended too
    login = await web.get("/ui/login", params={"changed": "1"})
    assert "Your password was changed" in login.text
    assert await accounts.authenticate("alice", NEW) is not None
    assert await accounts.authenticate("alice", PASSWORD) is None


async def test_guessing_the_current_password_meets_the_login_limit(
    web: httpx.AsyncClient,
) -> None:
    await log_in(web, "alice")
    answers = [
        (await change(web, current=f"guess {i}", new=NEW, repeat=NEW)).status_code for i in range(5)
    ]
    assert answers[:3] == [401, 401, 401] and 429 in answers[3:]  # auth.login_attempts: 3


async def test_an_admin_resets_a_password(web: httpx.AsyncClient, accounts: Accounts) -> None:
    await log_in(web, "root")
    users = await web.get("/ui/users")
    r = await web.post(
        "/ui/users/eve/password", data={"csrf": csrf_of(users.text), "password": NEW}
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/users?reset=eve"
    assert "The password of eve was reset" in (await web.get(r.headers["location"])).text
    assert await accounts.authenticate("eve", NEW) is not None
    r = await web.post(
        "/ui/users/root/password", data={"csrf": csrf_of(users.text), "password": NEW}
    )
    assert r.status_code == 400 and "on its page (Account)" in r.text
    await log_in(web, "alice")
    page = await web.get("/ui/account")
    r = await web.post("/ui/users/eve/password", data={"csrf": csrf_of(page.text), "password": NEW})
    assert r.status_code == 403


async def test_a_user_makes_sees_once_and_revokes_a_token(
    web: httpx.AsyncClient, accounts: Accounts, anon: httpx.AsyncClient
) -> None:
    await log_in(web, "alice")
    shown = await web.get("/ui/account")
    assert "You have no tokens." in shown.text
    assert "<td>team</td><td>owner</td>" in shown.text and "membership" in shown.text
    form = {"csrf": csrf_of(shown.text), "name": "ci", "days": "7"}
    r = await web.post("/ui/account/tokens", data={**form, "scopes": "team=pull,push\nal*=pull"})
    assert r.status_code == 201, r.text
    token = r.text.split('<code class="secret">')[1].split("</code>")[0]
    assert token.startswith("rpat_") and "shown this once" in r.text
    assert (await anon.get("/token", headers=basic("alice", token))).status_code == 200
    again = await web.get("/ui/account")
    assert token not in again.text
    assert "<code>team</code>: pull, push; <code>al*</code>: pull" in again.text
    assert "from 10.0.0.1" in again.text
    # Mistakes are said beside the form.
    for scopes, days, words in (
        ("team=fly", "7", "actions must be some of"),
        ("team=pull", "12", "Choose a lifetime"),
        ("", "7", "at least one scope"),
    ):
        r = await web.post("/ui/account/tokens", data={**form, "scopes": scopes, "days": days})
        assert r.status_code == 400 and words in r.text
    r = await web.post("/ui/account/tokens/ci/revoke", data={"csrf": csrf_of(again.text)})
    assert r.status_code == 303
    assert (await anon.get("/token", headers=basic("alice", token))).status_code == 401
    assert "You have no tokens." in (await web.get("/ui/account")).text
