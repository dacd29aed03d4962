"""Apps with authentication on, and accounts to use against them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.auth.accounts import Accounts
from registry.config import Settings

PASSWORD = "correct horse battery"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], request: pytest.FixtureRequest) -> Settings:
    """The app's settings, with a test module's SETTINGS (for example short blob leases,
    so that tests of garbage collection need not wait an hour)."""
    return make_settings(**getattr(request.module, "SETTINGS", {}))


@pytest.fixture
async def auth_app(make_settings: Callable[..., Settings]) -> AsyncIterator[Starlette]:
    application = create_app(make_settings(auth_enabled="true", auth_login_attempts="3"))
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
