"""Property-based: no body or path an admin sends to /api/v1/ makes a 5xx, and every
refusal is in the error format (hypothesis; the app runs on one event loop for all the
examples)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.app import create_app
from registry.config import Settings
from tests.api.conftest import PASSWORD
from tests.helpers import basic

FIELDS = [
    "name",
    "password",
    "admin",
    "disabled",
    "public",
    "owner",
    "role",
    "actions",
    "expires_days",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["pull", "push", "delete", "owner", "guest", "team", "alice", "a" * 70])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
# Bodies of the right shape, so that examples get past the first check too.
PLAUSIBLE = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["bob", "ci", "team2", "Bad Name", ""]) | st.text(max_size=70),
        "password": st.text(min_size=6, max_size=12),
        "admin": st.booleans(),
        "disabled": st.booleans(),
        "public": st.booleans(),
        "owner": st.sampled_from(["alice", "nobody"]),
        "role": st.sampled_from(["guest", "developer", "maintainer", "owner", "king"]),
        "actions": st.lists(st.sampled_from(["pull", "push", "delete", "fly"]), max_size=3),
        "expires_days": st.integers(-2, 40_000),
    },
).map(lambda d: json.dumps(d).encode())
BODIES = st.one_of(
    PLAUSIBLE,
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), VALUES, max_size=5).map(
        lambda d: json.dumps(d).encode()
    ),
    VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=100),
)
# Never the admin doing the asking, so that no example locks the rest out.
PATH_NAMES = st.one_of(
    st.sampled_from(["alice", "team", "nobody", "robot$team+ci"]), st.text(max_size=30)
).filter(lambda name: name != "root")
ROUTES = [
    ("POST", "/api/v1/users"),
    ("PATCH", "/api/v1/users/{a}"),
    ("POST", "/api/v1/namespaces"),
    ("PATCH", "/api/v1/namespaces/{a}"),
    ("PUT", "/api/v1/namespaces/{a}/members/{b}"),
    ("POST", "/api/v1/namespaces/{a}/robots"),
]


@pytest.fixture
def storage_env() -> dict[str, str]:
    return {}


@dataclass
class Admin:
    loop: asyncio.Runner
    client: httpx.AsyncClient

    def request(self, method: str, path: str, body: bytes) -> httpx.Response:
        headers = {"content-type": "application/json"}
        return self.loop.run(self.client.request(method, path, content=body, headers=headers))


@pytest.fixture
def admin(make_settings: Callable[..., Settings]) -> Iterator[Admin]:
    app = create_app(make_settings(auth_enabled="true"))
    accounts = app.state.registry.auth.accounts
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", headers=basic("root", PASSWORD)
    )
    with asyncio.Runner() as loop:
        loop.run(accounts.add_user("root", PASSWORD, admin=True))
        loop.run(accounts.add_user("alice", PASSWORD))
        loop.run(accounts.add_namespace("team", public=False, owner="alice"))
        yield Admin(loop, client)
        loop.run(client.aclose())
        loop.run(app.state.registry.close())


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.sampled_from(ROUTES), PATH_NAMES, PATH_NAMES, BODIES)
def test_account_bodies_never_make_a_5xx(
    admin: Admin, route: tuple[str, str], a: str, b: str, body: bytes
) -> None:
    method, template = route
    r = admin.request(method, template.format(a=quote(a, safe=""), b=quote(b, safe="")), body)
    assert r.status_code < 500, (route, a, b, body, r.text)
    if r.status_code >= 400:
        errors: Any = r.json()["errors"]
        assert errors[0]["code"] and errors[0]["message"], r.text
    # The admin is still the admin: nothing above can have locked it out.
    assert r.status_code != 401, r.text
