"""Single sign-on against a real OpenID provider (Canaille, from pytest-iam): the
authorization code flow with PKCE through its real forms, the account made at the first
login with its groups mapped to roles, no takeover of a local account, a forged or
stale callback refused, personal access tokens for the CLI that end when the provider
drops the user (refresh refused) and follow group changes, a provider that is down."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.auth import service
from registry.auth.accounts import Accounts
from registry.config import Settings
from tests.api.conftest import EVIL, PASSWORD
from tests.helpers import assert_error, basic, started
from tests.peers.oidc import add_client, add_user, browse, leave
from tests.peers.tools import free_port

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]

REDIRECT = "http://registry.test/ui/oidc/callback"


def oidc_env(iam: Any, client: tuple[str, str], **extra: str) -> dict[str, str]:
    roles = [{"source": "oidc", "group": "builders", "role": "developer", "namespace": "team"}]
    return {
        "auth_enabled": "true",
        "auth_login_attempts": "50",
        "auth_oidc_issuer": iam.url,
        "auth_oidc_client_id": client[0],
        "auth_oidc_client_secret": client[1],
        "auth_oidc_display_name": "Example SSO",
        "auth_oidc_username_claim": "sub",
        "auth_group_roles": json.dumps(roles),
        **extra,
    }


@pytest.fixture
def client_of_provider(iam_server: Any) -> tuple[str, str]:
    return add_client(iam_server, REDIRECT)


@pytest.fixture
async def sso_app(
    make_settings: Callable[..., Settings], iam_server: Any, client_of_provider: tuple[str, str]
) -> AsyncIterator[Starlette]:
    application = create_app(make_settings(**oidc_env(iam_server, client_of_provider)))
    async with application.router.lifespan_context(application):
        accounts: Accounts = application.state.registry.auth.accounts
        await accounts.add_user("root", PASSWORD, admin=True)
        await accounts.add_namespace("team", public=False, owner="root")
        yield application


@pytest.fixture
async def browser(sso_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The registry's side of a browser: it keeps cookies."""
    transport = httpx.ASGITransport(app=sso_app, client=("10.0.0.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        yield c


def person(prefix: str) -> str:
    """A user name of this test's own: the provider lives as long as the session."""
    return f"{prefix}{secrets.token_hex(3)}"


async def sso_login(client: httpx.AsyncClient, user: str, password: str) -> httpx.Response:
    """Click "Log in with", log in at the provider, come back: the callback's answer."""
    started = await client.get("/ui/oidc/login", params={"next": "/ui/account"})
    assert started.status_code == 302, started.text
    back = await anyio.to_thread.run_sync(
        browse, started.headers["location"], user, password, REDIRECT
    )
    return await client.get(back)


async def test_a_first_login_makes_the_account_with_its_group_roles(
    browser: httpx.AsyncClient, iam_server: Any, sso_app: Starlette
) -> None:
    name = person("olivia")
    add_user(iam_server, name, "olivia's password", ("builders", "readers"))
    page = await browser.get("/ui/login")
    assert "Log in with Example SSO" in page.text
    r = await sso_login(browser, name, "olivia's password")
    assert r.status_code == 200, r.text
    assert '<meta http-equiv="refresh" content="0;url=/ui/account">' in r.text
    account = await browser.get("/ui/account")
    assert account.status_code == 200
    assert "You log in through single sign-on" in account.text
    assert "the group <code>builders</code>" in account.text
    assert "change it there" in account.text  # no password form
    accounts: Accounts = sso_app.state.registry.auth.accounts
    groups, roles = await accounts.roles_of(name)
    assert groups == ["builders", "readers"]
    assert ("team", "developer", "builders") in roles and (name, "owner", None) in roles
    # The PKCE challenge went out, and the login was audited with its source.
    root = basic("root", PASSWORD)
    events = (await browser.get("/api/v1/audit", params={"action": "login"}, headers=root)).json()
    assert any(
        e["actor"]["name"] == name and e["detail"]["source"] == "oidc" for e in events["events"]
    )
    # Logging in again finds the same account.
    await browser.post(
        "/ui/logout", data={"csrf": account.text.split('name="csrf" value="')[1].split('"')[0]}
    )
    assert (await sso_login(browser, name, "olivia's password")).status_code == 200
    assert len([u for u in await accounts.list_users() if u.name == name]) == 1


async def test_a_provider_never_takes_over_a_local_account(
    browser: httpx.AsyncClient, iam_server: Any, sso_app: Starlette
) -> None:
    accounts: Accounts = sso_app.state.registry.auth.accounts
    name = person("local")
    await accounts.add_user(name, PASSWORD)
    add_user(iam_server, name, "the provider's password")
    r = await sso_login(browser, name, "the provider's password")
    assert r.status_code == 409
    assert "already exists here" in r.text and "never merged by name" in r.text
    assert "registry_session" not in r.headers.get("set-cookie", "")
    assert await accounts.authenticate(name, PASSWORD) is not None


async def test_forged_stale_and_refused_callbacks(
    browser: httpx.AsyncClient, iam_server: Any
) -> None:
    name = person("mallory")
    add_user(iam_server, name, "mallory's password")
    # A callback with no login started here (login CSRF): refused.
    r = await browser.get("/ui/oidc/callback", params={"code": "x", "state": "y"})
    assert r.status_code == 400 and "did not start here" in r.text
    # A state that is not the cookie's.
    started = await browser.get("/ui/oidc/login")
    back = await anyio.to_thread.run_sync(
        browse, started.headers["location"], name, "mallory's password", REDIRECT
    )
    forged = back.replace("state=", "state=x")
    assert (await browser.get(forged)).status_code == 400
    # The provider's own refusal is shown as text.
    started = await browser.get("/ui/oidc/login")
    r = await browser.get(
        "/ui/oidc/callback", params={"error": "access_denied", "error_description": EVIL}
    )
    assert r.status_code == 401 and EVIL not in r.text and "&lt;script&gt;" in r.text


async def test_a_callback_is_good_once(browser: httpx.AsyncClient, iam_server: Any) -> None:
    """The login's cookie goes with its callback. (A test of its own: Canaille's memory
    backend finds a client's older, unused code by a new one, and refuses the code.)"""
    other = person("trent")
    add_user(iam_server, other, "trent's password")
    started = await browser.get("/ui/oidc/login")
    back = await anyio.to_thread.run_sync(
        browse, started.headers["location"], other, "trent's password", REDIRECT
    )
    assert (await browser.get(back)).status_code == 200
    replay = await browser.get(back)
    assert replay.status_code == 400 and "did not start here" in replay.text


async def test_a_token_for_the_cli_follows_the_provider(
    browser: httpx.AsyncClient,
    iam_server: Any,
    sso_app: Starlette,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The token outlives the provider's tokens (Harbor's CLI secret does not), but not
    the user: the provider's refresh token is asked at each token request."""
    monkeypatch.setattr(service, "SOURCE_RECHECK_SECONDS", 0)
    name = person("ci")
    user = add_user(iam_server, name, "ci's password", ("builders",))
    assert (await sso_login(browser, name, "ci's password")).status_code == 200
    accounts: Accounts = sso_app.state.registry.auth.accounts
    token = await accounts.add_token(name, "ci", [("team", ["pull", "push"])], None)
    scope = {"service": "registry", "scope": "repository:team/app:pull,push"}
    r = await browser.get("/token", params=scope, headers=basic(name, token))
    assert r.status_code == 200
    # The provider's password is no docker password here.
    assert_error(
        await browser.get("/token", headers=basic(name, "ci's password")), 401, "UNAUTHORIZED"
    )
    # Out of the group at the provider: the next token request has no push in team.
    leave(iam_server, user, "builders")
    r = await browser.get("/token", params=scope, headers=basic(name, token))
    assert r.status_code == 200
    assert (await accounts.roles_of(name))[0] == []
    assert "push" not in r.text  # nothing of team is granted now
    # Gone from the provider: refused.
    iam_server.backend.delete(user)
    r = await browser.get("/token", params=scope, headers=basic(name, token))
    assert "no longer accepts" in assert_error(r, 401, "UNAUTHORIZED")["message"]


async def test_a_provider_that_is_down_or_elsewhere(
    make_settings: Callable[..., Settings], iam_server: Any, client_of_provider: tuple[str, str]
) -> None:
    for issuer, words in (
        (f"http://127.0.0.1:{free_port()}", "cannot be used now (ConnectError"),
        (iam_server.url + "elsewhere", "openid-configuration answered 404"),
    ):
        env = oidc_env(iam_server, client_of_provider, auth_oidc_issuer=issuer)
        async with started(make_settings(**env)) as (_, client):
            r = await client.get("/ui/oidc/login")
            assert r.status_code == 503 and words in r.text, r.text
            assert client_of_provider[1] not in r.text


async def test_local_logins_for_admins_only_with_single_sign_on(
    make_settings: Callable[..., Settings], iam_server: Any, client_of_provider: tuple[str, str]
) -> None:
    env = oidc_env(iam_server, client_of_provider, auth_local_login="admins")
    async with started(make_settings(**env)) as (application, client):
        accounts: Accounts = application.state.registry.auth.accounts
        await accounts.add_user("root", PASSWORD, admin=True)
        await accounts.add_user("lee", PASSWORD)
        page = await client.get("/ui/login")
        assert "for the registry's administrators only" in page.text
        r = await client.get("/token", headers=basic("lee", PASSWORD))
        assert "local logins are for admins only" in assert_error(r, 401, "UNAUTHORIZED")["message"]
        assert (await client.get("/token", headers=basic("root", PASSWORD))).status_code == 200
