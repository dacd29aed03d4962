"""Token authentication: challenges, the token endpoint (GET and OAuth2 POST), token
checks, scope downgrading, HTTP Basic on /v2/, failed-login limits and secret hygiene."""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette

from registry.app import create_app
from registry.auth.accounts import Accounts
from registry.config import Settings
from tests.api.conftest import PASSWORD
from tests.helpers import (
    TokenAuth,
    assert_error,
    basic,
    bearer,
    config_only_manifest,
    get_token,
    parse_challenge,
    put_manifest,
)

pytestmark = pytest.mark.anyio

REALM = "http://registry.test/token"


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def server_key(settings_dir: str) -> Any:
    with open(os.path.join(settings_dir, "token.key"), "rb") as file:
        pem = file.read()
    return serialization.load_pem_private_key(pem, password=None)


def forge(key: Any, **overrides: Any) -> str:
    """A token signed with `key`, valid but for `overrides`."""
    now = int(time.time())
    claims = {
        "iss": "registry",
        "sub": "alice",
        "aud": "registry",
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "x",
        "access": [{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}],
        **overrides,
    }
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, "ES256")


@pytest.fixture
async def alice(accounts: Accounts) -> str:
    await accounts.add_user("alice", PASSWORD)
    return "alice"


@pytest.fixture
def data_dir(auth_app: Starlette) -> str:
    return str(auth_app.state.registry.settings.data_dir)


# Challenges


async def test_version_check_challenges_without_scope(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/v2/")
    error = assert_error(r, 401, "UNAUTHORIZED")
    assert "detail" not in error
    assert r.headers["WWW-Authenticate"] == f'Bearer realm="{REALM}",service="registry"'
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/v2/team/app/manifests/v1", "repository:team/app:pull"),
        ("HEAD", "/v2/team/app/manifests/v1", "repository:team/app:pull"),
        ("PUT", "/v2/team/app/manifests/v1", "repository:team/app:push"),
        ("DELETE", "/v2/team/app/manifests/v1", "repository:team/app:delete"),
        ("GET", "/v2/team/app/blobs/sha256:" + "a" * 64, "repository:team/app:pull"),
        ("HEAD", "/v2/team/app/blobs/sha256:" + "a" * 64, "repository:team/app:pull"),
        ("DELETE", "/v2/team/app/blobs/sha256:" + "a" * 64, "repository:team/app:delete"),
        ("POST", "/v2/team/app/blobs/uploads/", "repository:team/app:push"),
        ("PATCH", "/v2/team/app/blobs/uploads/x", "repository:team/app:push"),
        ("PUT", "/v2/team/app/blobs/uploads/x", "repository:team/app:push"),
        ("GET", "/v2/team/app/blobs/uploads/x", "repository:team/app:push"),
        ("DELETE", "/v2/team/app/blobs/uploads/x", "repository:team/app:push"),
        ("GET", "/v2/team/app/tags/list", "repository:team/app:pull"),
        ("GET", "/v2/team/app/referrers/sha256:" + "a" * 64, "repository:team/app:pull"),
        ("GET", "/v2/library/x/y/manifests/latest", "repository:library/x/y:pull"),
        ("GET", "/v2/_catalog", "registry:catalog:*"),
    ],
)
async def test_every_route_challenges_with_the_scope_it_needs(
    anon: httpx.AsyncClient, method: str, path: str, scope: str
) -> None:
    r = await anon.request(method, path)
    assert r.status_code == 401
    if method != "HEAD":
        error = assert_error(r, 401, "UNAUTHORIZED")
        if scope.startswith("repository:"):
            assert {"Type", "Name", "Action"} <= error["detail"][0].keys()
    assert parse_challenge(r.headers["WWW-Authenticate"]) == {
        "realm": REALM,
        "service": "registry",
        "scope": scope,
    }


async def test_a_bad_name_is_refused_before_any_challenge(anon: httpx.AsyncClient) -> None:
    assert_error(await anon.get("/v2/Team/App/tags/list"), 400, "NAME_INVALID")


async def test_realm_service_and_expiry_from_config(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(
        make_settings(
            auth_enabled="true",
            auth_realm="https://auth.example/token",
            auth_service="registry.example",
            auth_token_ttl_seconds="60",
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        r = await c.get("/v2/")
        assert parse_challenge(r.headers["WWW-Authenticate"]) == {
            "realm": "https://auth.example/token",
            "service": "registry.example",
        }
        r = await c.get("/token", params={"service": "registry.example"})
        assert r.json()["expires_in"] == 60
        claims = claims_of(r.json()["token"])
        assert claims["aud"] == "registry.example"
        assert claims["exp"] - claims["iat"] == 60
        assert (await c.get("/v2/", headers=bearer(r.json()["token"]))).status_code == 200
    await app.state.registry.close()


# The token endpoint


async def test_token_has_the_spec_claims(anon: httpx.AsyncClient, alice: str) -> None:
    before = int(time.time())
    r = await anon.get(
        "/token",
        params={"service": "registry", "scope": "repository:alice/app:pull,push"},
        headers=basic(alice, PASSWORD),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    assert "refresh_token" not in body
    assert r.headers["Cache-Control"] == "no-store"
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256"
    assert header["kid"]
    claims = claims_of(body["token"])
    assert {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"} <= claims.keys()
    assert claims["sub"] == "alice"
    assert claims["aud"] == "registry"
    assert claims["iss"] == "registry"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iat"] >= before
    assert claims["access"] == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}
    ]


async def test_several_scopes_are_downgraded_to_what_the_account_may_do(
    anon: httpx.AsyncClient, accounts: Accounts, alice: str
) -> None:
    await accounts.add_namespace("shared", public=False)
    await accounts.set_member("shared", "alice", "guest")
    await accounts.add_namespace("open", public=True)
    await accounts.add_namespace("secret", public=False)
    token = await get_token(
        anon,
        "repository:alice/app:pull,push,delete",
        "repository:shared/app:pull,push",
        "repository:open/app:push,pull",
        "repository:secret/app:pull",
        "repository:nowhere/app:pull",
        "registry:catalog:*",
        "plugin:x:pull",
        user=alice,
        password=PASSWORD,
    )
    access = {(a["type"], a["name"]): a["actions"] for a in claims_of(token)["access"]}
    assert access == {
        ("repository", "alice/app"): ["delete", "pull", "push"],
        ("repository", "shared/app"): ["pull"],
        ("repository", "open/app"): ["pull"],
        ("registry", "catalog"): ["*"],
    }


async def test_wildcard_action_grants_what_the_role_allows(
    anon: httpx.AsyncClient, accounts: Accounts, alice: str
) -> None:
    await accounts.add_namespace("team", public=False)
    await accounts.set_member("team", "alice", "developer")
    token = await get_token(anon, "repository:team/app:*", user=alice, password=PASSWORD)
    assert claims_of(token)["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]}
    ]


async def test_anonymous_token_grants_only_public_pull(
    anon: httpx.AsyncClient, accounts: Accounts
) -> None:
    await accounts.add_namespace("open", public=True)
    r = await anon.get(
        "/token",
        params=[
            ("service", "registry"),
            ("scope", "repository:open/app:pull,push"),
            ("offline_token", "true"),
        ],
    )
    assert r.status_code == 200
    assert "refresh_token" not in r.json()
    claims = claims_of(r.json()["token"])
    assert claims["sub"] == ""
    assert claims["access"] == [{"type": "repository", "name": "open/app", "actions": ["pull"]}]


async def test_wrong_password_and_unknown_user_look_alike(
    anon: httpx.AsyncClient, alice: str
) -> None:
    wrong = await anon.get("/token", headers=basic(alice, "not it at all"))
    unknown = await anon.get("/token", headers=basic("mallory", "not it at all"))
    assert_error(wrong, 401, "UNAUTHORIZED")
    assert wrong.json() == unknown.json()
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="registry"'


async def test_disabled_user_cannot_log_in(
    anon: httpx.AsyncClient, accounts: Accounts, alice: str
) -> None:
    await accounts.set_user("alice", disabled=True)
    assert_error(await anon.get("/token", headers=basic(alice, PASSWORD)), 401, "UNAUTHORIZED")


async def test_account_parameter_must_match_the_credentials(
    anon: httpx.AsyncClient, alice: str
) -> None:
    r = await anon.get("/token", params={"account": "bob"}, headers=basic(alice, PASSWORD))
    assert_error(r, 401, "UNAUTHORIZED")
    r = await anon.get("/token", params={"account": "alice"}, headers=basic(alice, PASSWORD))
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"service": "elsewhere"}, "UNSUPPORTED"),
        ({"scope": "repository"}, "UNSUPPORTED"),
        ({"scope": "repository:Team/App:pull"}, "NAME_INVALID"),
    ],
)
async def test_bad_token_requests_are_400(
    anon: httpx.AsyncClient, params: dict[str, str], code: str
) -> None:
    assert_error(await anon.get("/token", params=params), 400, code)


async def test_malformed_basic_credentials_are_401(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/token", headers={"Authorization": "Basic !!!"})
    assert_error(r, 401, "UNAUTHORIZED")
    # A NUL or another control character in the name: no account, and no 500 from
    # PostgreSQL, which refuses a NUL in text.
    for name in (b"a\x00b", b"a\nb"):
        header = "Basic " + base64.b64encode(name + b":password").decode()
        for path in ("/token", "/v2/", "/api/v1/me"):
            r = await anon.get(path, headers={"Authorization": header})
            assert "malformed Basic credentials" in assert_error(r, 401, "UNAUTHORIZED")["message"]


async def test_token_endpoint_is_absent_with_auth_off(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/token"), 404, "UNSUPPORTED")


# Refresh tokens and the OAuth2 form


async def test_offline_token_gives_a_refresh_token_that_gets_access_tokens(
    anon: httpx.AsyncClient, alice: str
) -> None:
    r = await anon.get(
        "/token",
        params={"offline_token": "true", "client_id": "docker"},
        headers=basic(alice, PASSWORD),
    )
    refresh = r.json()["refresh_token"]
    r = await anon.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": "registry",
            "client_id": "docker",
            "scope": "repository:alice/app:pull repository:alice/app:push",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "repository:alice/app:pull,push"
    assert claims_of(body["access_token"])["sub"] == "alice"
    # A refresh token is not an access token.
    assert_error(await anon.get("/v2/", headers=bearer(refresh)), 401, "UNAUTHORIZED")


async def test_password_grant_with_offline_access(anon: httpx.AsyncClient, alice: str) -> None:
    r = await anon.post(
        "/token",
        data={
            "grant_type": "password",
            "username": alice,
            "password": PASSWORD,
            "service": "registry",
            "client_id": "containerd",
            "access_type": "offline",
            "scope": "repository:alice/app:pull",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["refresh_token"]
    assert body["expires_in"] == 300
    assert claims_of(body["access_token"])["access"][0]["actions"] == ["pull"]
    r = await anon.get("/v2/alice/app/tags/list", headers=bearer(body["access_token"]))
    assert_error(r, 404, "NAME_UNKNOWN")


async def test_password_grant_with_a_wrong_password(anon: httpx.AsyncClient, alice: str) -> None:
    r = await anon.post(
        "/token",
        data={
            "grant_type": "password",
            "username": alice,
            "password": "nope",
            "service": "registry",
        },
    )
    assert_error(r, 401, "UNAUTHORIZED")


async def test_new_password_revokes_refresh_tokens(
    anon: httpx.AsyncClient, accounts: Accounts, alice: str
) -> None:
    r = await anon.get("/token", params={"offline_token": "true"}, headers=basic(alice, PASSWORD))
    refresh = r.json()["refresh_token"]
    await accounts.set_password("alice", "another password")
    r = await anon.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
    error = assert_error(r, 401, "UNAUTHORIZED")
    assert "log in again" in error["message"]


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "client_credentials"},
        {},
    ],
)
async def test_unknown_grant_type(anon: httpx.AsyncClient, form: dict[str, str]) -> None:
    assert_error(await anon.post("/token", data=form), 400, "UNSUPPORTED")


async def test_post_needs_a_form(anon: httpx.AsyncClient) -> None:
    r = await anon.post("/token", json={"grant_type": "password"})
    assert_error(r, 400, "UNSUPPORTED")
    r = await anon.post("/token", data={"grant_type": "password", "padding": "x" * 70_000})
    assert "larger than" in assert_error(r, 400, "UNSUPPORTED")["message"]
    r = await anon.post(
        "/token",
        content=b"grant_type=\xff",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(r, 400, "UNSUPPORTED")


async def test_refresh_token_that_is_garbage(anon: httpx.AsyncClient) -> None:
    r = await anon.post("/token", data={"grant_type": "refresh_token", "refresh_token": "x.y.z"})
    assert_error(r, 401, "UNAUTHORIZED")


# Checking tokens on /v2/


async def test_a_good_token_opens_the_route(anon: httpx.AsyncClient, alice: str) -> None:
    token = await get_token(anon, user=alice, password=PASSWORD)
    r = await anon.get("/v2/", headers=bearer(token))
    assert r.status_code == 200


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda key: forge(key)[:-4] + "AAAA", id="tampered-signature"),
        pytest.param(
            lambda key: _swap_payload(forge(key), {"sub": "admin"}), id="tampered-payload"
        ),
        pytest.param(lambda key: forge(key, exp=int(time.time()) - 120), id="expired"),
        pytest.param(lambda key: forge(key, nbf=int(time.time()) + 600), id="not-yet-valid"),
        pytest.param(lambda key: forge(key, aud="another-service"), id="wrong-audience"),
        pytest.param(lambda key: forge(key, iss="someone-else"), id="wrong-issuer"),
        pytest.param(lambda key: forge(key, jti=None), id="missing-jti"),
        pytest.param(lambda key: forge(key, access="everything"), id="malformed-access"),
        pytest.param(lambda key: forge(ec.generate_private_key(ec.SECP256R1())), id="wrong-key"),
        pytest.param(
            lambda key: jwt.encode({"sub": "alice", "aud": "registry"}, None, "none"),
            id="alg-none",
        ),
        pytest.param(
            lambda key: jwt.encode({"sub": "alice", "aud": "registry"}, "s" * 32, "HS256"),
            id="hmac",
        ),
        pytest.param(lambda key: "not-a-jwt", id="garbage"),
        pytest.param(lambda key: forge(key, exp=str(int(time.time()) + 600)), id="exp-string"),
        pytest.param(lambda key: forge(key, iat=True), id="iat-bool"),
        pytest.param(lambda key: forge(key, nbf="0"), id="nbf-string"),
    ],
)
async def test_bad_tokens_are_401(
    anon: httpx.AsyncClient, data_dir: str, make_token: Callable[[Any], str]
) -> None:
    token = make_token(server_key(data_dir))
    r = await anon.get("/v2/alice/app/tags/list", headers=bearer(token))
    error = assert_error(r, 401, "UNAUTHORIZED")
    assert error["message"].startswith("invalid token")
    challenge = parse_challenge(r.headers["WWW-Authenticate"])
    assert challenge["error"] == "invalid_token"
    assert challenge["scope"] == "repository:alice/app:pull"


def _swap_payload(token: str, changes: dict[str, Any]) -> str:
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


async def test_clock_skew_is_tolerated(anon: httpx.AsyncClient, data_dir: str) -> None:
    key = server_key(data_dir)
    for token in (
        forge(key, nbf=int(time.time()) + 20),
        forge(key, exp=int(time.time()) - 20),
    ):
        r = await anon.get("/v2/alice/app/tags/list", headers=bearer(token))
        assert_error(r, 404, "NAME_UNKNOWN")


async def test_beyond_the_token_is_401_when_the_account_could_have_it(
    anon: httpx.AsyncClient, alice: str
) -> None:
    token = await get_token(anon, "repository:alice/app:pull", user=alice, password=PASSWORD)
    r = await anon.post("/v2/alice/app/blobs/uploads/", headers=bearer(token))
    assert_error(r, 401, "UNAUTHORIZED")
    assert parse_challenge(r.headers["WWW-Authenticate"])["scope"] == "repository:alice/app:push"


async def test_beyond_the_token_is_403_when_the_account_never_could(
    anon: httpx.AsyncClient, accounts: Accounts, alice: str
) -> None:
    await accounts.add_namespace("team", public=False)
    await accounts.set_member("team", "alice", "guest")
    token = await get_token(anon, "repository:team/app:pull,push", user=alice, password=PASSWORD)
    error = assert_error(
        await anon.post("/v2/team/app/blobs/uploads/", headers=bearer(token)), 403, "DENIED"
    )
    assert error["detail"] == [{"Type": "repository", "Name": "team/app", "Action": "push"}]


async def test_private_answers_do_not_reveal_whether_a_repository_exists(
    anon: httpx.AsyncClient, accounts: Accounts, alice: str
) -> None:
    await accounts.add_user("bob", PASSWORD)
    owner = httpx.AsyncClient(
        transport=anon._transport, base_url="http://registry.test", auth=TokenAuth("bob", PASSWORD)
    )
    body = await config_only_manifest(owner, "bob/exists")
    await put_manifest(
        owner, "bob/exists", "v1", body, "application/vnd.oci.image.manifest.v1+json"
    )
    token = await get_token(
        anon,
        "repository:bob/exists:pull",
        "repository:bob/absent:pull",
        user=alice,
        password=PASSWORD,
    )
    for headers in ({}, bearer(token)):
        answers = []
        for repo in ("bob/exists", "bob/absent"):
            r = await anon.get(f"/v2/{repo}/manifests/v1", headers=headers)
            answers.append((r.status_code, r.json()["errors"][0]["code"]))
        assert answers[0] == answers[1], answers
    assert answers[0] == (403, "DENIED")


async def test_the_token_key_is_private_and_shared_by_apps_on_one_data_folder(
    anon: httpx.AsyncClient, data_dir: str, alice: str, make_settings: Callable[..., Settings]
) -> None:
    assert os.stat(os.path.join(data_dir, "token.key")).st_mode & 0o777 == 0o600
    token = await get_token(anon, user=alice, password=PASSWORD)
    second = create_app(make_settings(auth_enabled="true"))
    transport = httpx.ASGITransport(app=second)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        assert (await c.get("/v2/", headers=bearer(token))).status_code == 200
    await second.state.registry.close()


async def test_rs256_key_from_config(
    tmp_path: Any, make_settings: Callable[..., Settings], accounts: Accounts
) -> None:
    app = create_app(
        make_settings(
            auth_enabled="true",
            auth_key_algorithm="RS256",
            auth_key_file=str(tmp_path / "rsa.pem"),
        )
    )
    await app.state.registry.auth.accounts.add_user("carol", PASSWORD)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        token = await get_token(c, user="carol", password=PASSWORD)
        assert jwt.get_unverified_header(token)["alg"] == "RS256"
        assert (await c.get("/v2/", headers=bearer(token))).status_code == 200
    assert (tmp_path / "rsa.pem").stat().st_mode & 0o777 == 0o600
    await app.state.registry.close()


# HTTP Basic on /v2/


async def test_basic_credentials_work_directly_on_v2(anon: httpx.AsyncClient, alice: str) -> None:
    assert (await anon.get("/v2/", headers=basic(alice, PASSWORD))).status_code == 200
    r = await anon.get("/v2/alice/app/tags/list", headers=basic(alice, PASSWORD))
    assert_error(r, 404, "NAME_UNKNOWN")
    r = await anon.get("/v2/", headers=basic(alice, "wrong password"))
    assert_error(r, 401, "UNAUTHORIZED")
    assert parse_challenge(r.headers["WWW-Authenticate"])["realm"] == REALM


async def test_basic_credentials_beyond_the_role_are_403(
    anon: httpx.AsyncClient, accounts: Accounts, alice: str
) -> None:
    await accounts.add_namespace("team", public=False)
    r = await anon.get("/v2/team/app/tags/list", headers=basic(alice, PASSWORD))
    assert_error(r, 403, "DENIED")


async def test_basic_can_be_switched_off(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(auth_enabled="true", auth_basic="false"))
    await app.state.registry.auth.accounts.add_user("alice", PASSWORD)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        r = await c.get("/v2/", headers=basic("alice", PASSWORD))
        assert_error(r, 401, "UNAUTHORIZED")
        assert (await c.get("/token", headers=basic("alice", PASSWORD))).status_code == 200
    await app.state.registry.close()


# Abuse


async def test_failed_logins_are_limited_per_account_and_address(
    auth_app: Starlette, anon: httpx.AsyncClient, alice: str
) -> None:
    for _ in range(3):
        assert_error(await anon.get("/token", headers=basic(alice, "guess")), 401, "UNAUTHORIZED")
    # The right password too is refused while the limit holds, on every login path.
    r = await anon.get("/token", headers=basic(alice, PASSWORD))
    error = assert_error(r, 429, "TOOMANYREQUESTS")
    assert 0 < int(r.headers["Retry-After"]) <= 300
    assert "try again" in error["message"]
    r = await anon.post(
        "/token", data={"grant_type": "password", "username": alice, "password": PASSWORD}
    )
    assert_error(r, 429, "TOOMANYREQUESTS")
    assert_error(await anon.get("/v2/", headers=basic(alice, PASSWORD)), 429, "TOOMANYREQUESTS")
    # Another address, and another account from this address, are not held back.
    other = httpx.ASGITransport(app=auth_app, client=("10.0.0.2", 40000))
    async with httpx.AsyncClient(transport=other, base_url="http://registry.test") as c:
        assert (await c.get("/token", headers=basic(alice, PASSWORD))).status_code == 200
    assert_error(await anon.get("/token", headers=basic("bob", "guess")), 401, "UNAUTHORIZED")


async def test_failed_logins_are_counted_across_replicas(
    anon: httpx.AsyncClient, alice: str, make_settings: Callable[..., Settings]
) -> None:
    for _ in range(3):
        assert_error(await anon.get("/token", headers=basic(alice, "guess")), 401, "UNAUTHORIZED")
    replica = create_app(make_settings(auth_enabled="true", auth_login_attempts="3"))
    transport = httpx.ASGITransport(app=replica, client=("10.0.0.1", 40001))
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        r = await c.get("/token", headers=basic(alice, PASSWORD))
        assert_error(r, 429, "TOOMANYREQUESTS")
    await replica.state.registry.close()


async def test_a_success_clears_the_count(anon: httpx.AsyncClient, alice: str) -> None:
    for _ in range(2):
        assert_error(await anon.get("/token", headers=basic(alice, "guess")), 401, "UNAUTHORIZED")
    assert (await anon.get("/token", headers=basic(alice, PASSWORD))).status_code == 200
    for _ in range(2):
        assert_error(await anon.get("/token", headers=basic(alice, "guess")), 401, "UNAUTHORIZED")
    assert (await anon.get("/token", headers=basic(alice, PASSWORD))).status_code == 200


async def test_secrets_never_reach_the_log(
    anon: httpx.AsyncClient, alice: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = ["wrong-password-1234", PASSWORD]
    await anon.get("/token", headers=basic(alice, secrets[0]))
    r = await anon.get("/token", params={"offline_token": "true"}, headers=basic(alice, PASSWORD))
    secrets += [r.json()["token"], r.json()["refresh_token"]]
    await anon.get("/v2/", headers=bearer(r.json()["token"][:-3] + "abc"))
    await anon.post(
        "/token", data={"grant_type": "password", "username": alice, "password": secrets[0]}
    )
    assert "failed login for 'alice'" in caplog.text
    for secret in secrets:
        assert secret not in caplog.text
