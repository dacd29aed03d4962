"""Apps with authentication on, and accounts to use against them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.auth.accounts import Accounts
from registry.config import Settings
from tests.helpers import basic, push_image
from tests.peers.registry import RegistryProcess

PASSWORD = "correct horse battery"
# Text an attacker may write (a label, an annotation): pages show it as text.
EVIL = "<script>alert(1)</script>"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], request: pytest.FixtureRequest) -> Settings:
    """The app's settings, with a test module's SETTINGS (for example short blob leases,
    so that tests of garbage collection need not wait an hour)."""
    return make_settings(**getattr(request.module, "SETTINGS", {}))


# Webhook retries in milliseconds, given up after a third of a second.
FAST_WEBHOOKS = {
    "webhooks_backoff_seconds": "0.01",
    "webhooks_max_backoff_seconds": "0.05",
    "webhooks_retry_hours": "0.0001",
}


@pytest.fixture
async def auth_app(
    make_settings: Callable[..., Settings], request: pytest.FixtureRequest
) -> AsyncIterator[Starlette]:
    """An app with authentication on, and a test module's AUTH_SETTINGS."""
    extra = getattr(request.module, "AUTH_SETTINGS", {})
    application = create_app(make_settings(auth_enabled="true", auth_login_attempts="3", **extra))
    yield application
    await application.state.registry.close()


@pytest.fixture
def accounts(auth_app: Starlette) -> Accounts:
    return auth_app.state.registry.auth.accounts


@pytest.fixture
async def anon(auth_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no credentials, from 10.0.0.1."""
    transport = httpx.ASGITransport(app=auth_app, client=("10.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        yield c


@pytest.fixture
async def web(auth_app: Starlette, accounts: Accounts) -> httpx.AsyncClient:
    """A console client from 10.0.0.9, not logged in: admin root, alice owning team
    (with team/app:v1 whose labels and annotations are EVIL), eve, and alice/own:v1."""
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_user("alice", PASSWORD)
    await accounts.add_user("eve", PASSWORD)
    await accounts.add_namespace("team", public=False, owner="alice")
    transport = httpx.ASGITransport(app=auth_app, client=("10.0.0.9", 5000))
    client = httpx.AsyncClient(transport=transport, base_url="http://registry.test")
    client.headers.update(basic("root", PASSWORD))
    config = json.dumps(
        {"os": "linux", "architecture": "amd64", "config": {"Labels": {"title": EVIL}}}
    ).encode()
    await push_image(client, "team/app", "v1", config=config, extra={"annotations": {"note": EVIL}})
    await push_image(client, "alice/own", "v1")
    del client.headers["authorization"]
    return client


OTHER_ADMIN_PASSWORD = "the other registry's admin"


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """Another instance of this registry, with token auth (a remote for replication),
    one per test module."""
    env = {"REGISTRY_AUTH_ENABLED": "true", "REGISTRY_ADMIN_PASSWORD": OTHER_ADMIN_PASSWORD}
    server = RegistryProcess(tmp_path_factory.mktemp("other") / "data", env).start()
    yield server
    server.stop()
