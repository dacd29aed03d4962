"""Single sign-on in a real browser: Chromium, driven by Playwright, logs in to the
console of `registry serve` through a real OpenID provider (Canaille, from pytest-iam)
with its own login, password and consent pages, and comes back logged in on another
site's redirect (the provider is `localhost`, the registry `127.0.0.1`); then makes a
personal access token for the CLI. A directory's user logs in with the password form."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import RegistryProcess
from tests.peers.ldap import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd, group_dn
from tests.peers.oidc import add_client, add_user

ADMIN_PASSWORD = "sso-admin-password"


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Slapd]:
    server = Slapd(tmp_path / "ldap").start()
    server.add_user("lena", "lena in ldap", ("builders",))
    yield server
    server.stop()


@pytest.fixture
def server(tmp_path: Path, iam_server: Any, directory: Slapd) -> Iterator[RegistryProcess]:
    roles = [
        {"source": "oidc", "group": "builders", "role": "developer", "namespace": "team"},
        {"source": "ldap", "group": group_dn("builders"), "role": "guest", "namespace": "team"},
    ]
    process = RegistryProcess(tmp_path / "data", {"REGISTRY_AUTH_ENABLED": "true"})
    client_id, client_secret = add_client(iam_server, f"{process.url}/ui/oidc/callback")
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(client_secret + "\n")
    process.env.update(
        {
            "REGISTRY_AUTH_OIDC_ISSUER": iam_server.url,
            "REGISTRY_AUTH_OIDC_CLIENT_ID": client_id,
            "REGISTRY_AUTH_OIDC_CLIENT_SECRET_FILE": str(secret_file),
            "REGISTRY_AUTH_OIDC_DISPLAY_NAME": "Example SSO",
            "REGISTRY_AUTH_OIDC_USERNAME_CLAIM": "sub",
            "REGISTRY_AUTH_LDAP_URL": directory.url,
            "REGISTRY_AUTH_LDAP_BIND_DN": SERVICE_DN,
            "REGISTRY_AUTH_LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
            "REGISTRY_AUTH_LDAP_USER_BASE": PEOPLE,
            "REGISTRY_AUTH_LDAP_GROUP_BASE": GROUPS,
            "REGISTRY_AUTH_GROUP_ROLES": json.dumps(roles),
            "REGISTRY_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
    )
    process.start()
    try:
        process.cli("namespace", "add", "team", "--owner", "admin")
        yield process
    finally:
        process.stop()
        assert client_secret not in process.log.read_text()


def provider_login(page: Page, user: str, password: str) -> None:
    """Canaille's own pages: the login, the password, and (the first time) consent."""
    page.locator("input[name=login]").fill(user)
    page.locator("input[name=login]").press("Enter")
    page.locator("input[name=password]").fill(password)
    page.locator("input[name=password]").press("Enter")
    consent = page.locator("button[name=answer][value=accept]")
    page.wait_for_load_state()
    if consent.count():
        consent.click()


def test_single_sign_on_then_a_token_for_the_cli(
    browser: Browser, server: RegistryProcess, iam_server: Any
) -> None:
    add_user(iam_server, "nora", "nora's provider password", ("builders",))
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    try:
        page.goto("/ui/account")  # sent to log in first, and back here after
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        assert_accessible(page)
        page.get_by_role("link", name="Log in with Example SSO").click()
        assert page.url.startswith(iam_server.url), page.url
        provider_login(page, "nora", "nora's provider password")
        expect(page.get_by_role("heading", name="Your account: nora")).to_be_visible()
        assert page.url == f"{server.url}/ui/account"
        expect(page.get_by_text("You log in through single sign-on")).to_be_visible()
        roles = page.get_by_role("table", name="Each role you hold and where it comes from")
        expect(roles).to_contain_text("the group builders")
        assert_accessible(page)

        page.get_by_label("Token name").fill("laptop")
        page.get_by_label("Scopes, one per line").fill("team=pull,push")
        page.get_by_role("button", name="Make a token").click()
        token = page.locator("code.secret").inner_text()
        answer = httpx.get(
            f"{server.url}/token",
            params={"service": "registry", "scope": "repository:team/app:pull,push"},
            auth=("nora", token),
        )
        assert answer.status_code == 200, answer.text
        granted = answer.json()["token"]
        assert granted  # a developer of team through the provider's group

        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    finally:
        context.close()


def test_a_directory_user_logs_in_with_the_password_form(
    browser: Browser, server: RegistryProcess
) -> None:
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    try:
        page.goto("/ui/login?next=/ui/account")
        page.get_by_label("User name").fill("lena")
        page.get_by_label("Password").fill("lena in ldap")
        page.get_by_role("button", name="Log in", exact=True).click()
        expect(page.get_by_text("You log in through LDAP")).to_be_visible()
        expect(page.get_by_text("the LDAP directory: change it there")).to_be_visible()
        roles = page.get_by_role("table", name="Each role you hold and where it comes from")
        expect(roles).to_contain_text("guest")
    finally:
        context.close()
