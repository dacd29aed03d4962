"""The audit log: who did what, from where, with which token, and the outcome; logins
that fail, tokens that may push or delete, account and setting changes; queried and
filtered at /api/v1/audit (admins; owners for their namespace), exported as JSON lines,
pruned after audit.retention_days. Pulls are rows only with audit.pulls on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from starlette.applications import Starlette

from registry.app import create_app
from registry.auth.accounts import Accounts
from registry.config import Settings
from registry.mediatypes import OCI_MANIFEST
from registry.metadata.models import Event
from tests.api.conftest import PASSWORD
from tests.helpers import assert_error, basic, bearer, get_token, push_image

pytestmark = pytest.mark.anyio


@pytest.fixture
def storage_env() -> dict[str, str]:
    return {}


@pytest.fixture
async def admin(auth_app: Starlette, accounts: Accounts) -> AsyncIterator[httpx.AsyncClient]:
    """The admin `root`, from 10.0.0.9; namespace `team` owned by `olive`."""
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_user("olive", PASSWORD)
    await accounts.add_namespace("team", public=False, owner="olive")
    transport = httpx.ASGITransport(app=auth_app, client=("10.0.0.9", 40000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", headers=basic("root", PASSWORD)
    ) as client:
        yield client


async def audit(client: httpx.AsyncClient, **query: Any) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/audit", params={"n": 1000, **query})
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


async def test_logins_tokens_and_pushes_name_the_actor_token_and_address(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    r = await anon.get("/token", params={"service": "registry"}, headers=basic("olive", "wrong"))
    assert r.status_code == 401
    token = await get_token(anon, "repository:team/app:pull,push", user="olive", password=PASSWORD)
    denied = await get_token(anon, "repository:other/app:push", user="olive", password=PASSWORD)
    assert denied
    client = anon
    client.headers.update(bearer(token))
    digest, _ = await push_image(client, "team/app", "v1", layers=[b"audited"])

    (failed,) = await audit(admin, action="login", outcome="failure")
    assert failed["actor"] == {"name": "olive", "kind": "user", "token": None}
    assert failed["request"]["addr"] == "10.0.0.1"
    assert failed["request"]["method"] == "GET"
    logins = await audit(admin, action="login", outcome="success", actor="olive")
    assert len(logins) == 2
    tokens = await audit(admin, action="token")
    assert [t["outcome"] for t in tokens] == ["denied", "success"]
    assert tokens[1]["detail"]["requested"] == ["repository:team/app:push"]
    assert tokens[1]["detail"]["granted"] == ["repository:team/app:push"]
    assert tokens[0]["detail"] == {
        "requested": ["repository:other/app:push"],
        "granted": [],
        "jti": tokens[0]["detail"]["jti"],
    }
    pushes = await audit(admin, action="push", namespace="team")
    assert len(pushes) == 3  # config, layer, manifest
    manifest = pushes[0]
    assert manifest["target"]["digest"] == digest
    assert manifest["actor"] == {
        "name": "olive",
        "kind": "user",
        "token": tokens[1]["detail"]["jti"],
    }
    assert manifest["request"]["addr"] == "10.0.0.1"
    assert manifest["namespace"] == "team"


async def test_account_and_setting_changes_are_audited(admin: httpx.AsyncClient) -> None:
    steps = [
        ("POST", "/api/v1/users", {"name": "dev", "password": PASSWORD}),
        ("PATCH", "/api/v1/users/dev", {"admin": True}),
        ("PATCH", "/api/v1/users/dev", {"password": PASSWORD + "!"}),
        ("POST", "/api/v1/namespaces", {"name": "ops", "public": False}),
        ("PATCH", "/api/v1/namespaces/ops", {"public": True}),
        ("PUT", "/api/v1/namespaces/ops/members/dev", {"role": "developer"}),
        ("DELETE", "/api/v1/namespaces/ops/members/dev", None),
        ("POST", "/api/v1/namespaces/ops/robots", {"name": "ci", "actions": ["pull", "push"]}),
        ("PATCH", "/api/v1/namespaces/ops/policy", {"immutable_tags": ["v*"]}),
        ("DELETE", "/api/v1/namespaces/ops/robots/robot$ops+ci", None),
        ("DELETE", "/api/v1/users/dev", None),
        ("DELETE", "/api/v1/namespaces/ops", None),
    ]
    for method, path, body in steps:
        r = await admin.request(method, path, json=body)
        assert r.status_code < 300, (path, r.text)
    found = list(reversed(await audit(admin, actor="root")))
    assert [e["action"] for e in found if not e["action"].startswith("login")] == [
        "user.create",
        "user.update",
        "user.password",
        "namespace.create",
        "namespace.update",
        "member.set",
        "member.remove",
        "robot.create",
        "policy.update",
        "robot.delete",
        "user.delete",
        "namespace.delete",
    ]
    by_action = {e["action"]: e for e in found}
    assert by_action["user.update"]["detail"] == {"user": "dev", "is_admin": True}
    assert by_action["user.password"]["detail"] == {"user": "dev"}  # never the hash
    assert by_action["member.set"]["detail"] == {"user": "dev", "role": "developer"}
    assert by_action["member.set"]["namespace"] == "ops"
    assert by_action["robot.create"]["detail"]["grants"] == {"ops": ["pull", "push"]}
    assert by_action["policy.update"]["detail"] == {"immutable_tags": ["v*"]}
    assert all(e["request"]["addr"] == "10.0.0.9" for e in found)
    assert all(e["outcome"] == "success" for e in found)
    # Filters: a prefix of actions, a namespace, and time.
    users = await audit(admin, action="user.")
    assert {e["action"] for e in users} == {
        "user.create",
        "user.update",
        "user.password",
        "user.delete",
    }
    assert {e["action"] for e in await audit(admin, namespace="ops")} >= {"member.set"}
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert await audit(admin, since=later) == []
    assert len(await audit(admin, until=later)) == len(await audit(admin))
    r = await admin.get("/api/v1/audit", params={"since": later, "until": later})
    assert_error(r, 400, "INVALID")
    r = await admin.get("/api/v1/audit", params={"since": "yesterday"})
    assert_error(r, 400, "INVALID")


async def test_pages_owners_and_the_export(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    for i in range(5):
        await admin.post("/api/v1/users", json={"name": f"user{i}", "password": PASSWORD})
        r = await admin.put(f"/api/v1/namespaces/team/members/user{i}", json={"role": "guest"})
        assert r.status_code == 204
    everything = await audit(admin)
    first = await admin.get("/api/v1/audit", params={"n": 3})
    assert [e["id"] for e in first.json()["events"]] == [e["id"] for e in everything[:3]]
    link = first.headers["Link"]
    following = await admin.get(link[1 : link.index(">")])
    assert [e["id"] for e in following.json()["events"]] == [e["id"] for e in everything[3:6]]

    # An owner reads their namespace's log, and no other.
    owner = {"headers": basic("olive", PASSWORD)}
    r = await anon.get("/api/v1/audit", params={"namespace": "team"}, **owner)
    assert r.status_code == 200
    assert r.json()["events"] and all(e["namespace"] == "team" for e in r.json()["events"])
    assert_error(await anon.get("/api/v1/audit", **owner), 403, "DENIED")
    r = await anon.get("/api/v1/audit", params={"namespace": "root"}, **owner)
    assert_error(r, 403, "DENIED")
    assert_error(await anon.get("/api/v1/audit"), 401, "UNAUTHORIZED")

    # A bad key is refused before the stream begins, with the error format.
    assert_error(await admin.get("/api/v1/audit/export", params={"last": "x"}), 400, "INVALID")
    r = await admin.get("/api/v1/audit/export", params={"action": "user."})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert lines == await audit(admin, action="user.")
    assert len(lines) == 7  # root and olive, then user0..4
    r = await anon.get("/api/v1/audit/export", params={"namespace": "team"}, **owner)
    assert r.status_code == 200 and all(
        json.loads(line)["namespace"] == "team" for line in r.text.splitlines()
    )


async def test_old_rows_are_pruned_and_pulls_are_rows_only_when_asked(
    make_settings: Callable[..., Settings],
) -> None:
    for pulls in (False, True):
        app = create_app(make_settings(audit_pulls=str(pulls), audit_retention_days="1"))
        transport = httpx.ASGITransport(app=app)
        registry = app.state.registry
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as c:
                digest, _ = await push_image(c, "team/app", "v1")
                r = await c.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
                assert r.status_code == 200
                await registry.pulls.flush()
                pulled = await audit(c, action="pull")
                if not pulls:
                    assert pulled == []
                    continue
                (pull,) = pulled
                assert pull["target"]["digest"] == digest and pull["target"]["tag"] == "v1"
                # Rows older than the retention go; the newer stay.
                pushes = len(await audit(c, action="push"))  # of both apps: one database
                assert pushes == 6
                async with registry.db.write() as conn:
                    old = datetime.now(UTC) - timedelta(days=2)
                    await conn.execute(
                        update(Event).where(Event.action == "push").values(created_at=old)
                    )
                # Not before the outbox has fanned them out to webhooks.
                assert await registry.webhooks.prune() == (0, 0)
                await registry.webhooks.dispatch()
                events, _ = await registry.webhooks.prune()
                assert events == pushes
                assert await audit(c, action="push") == []
                assert len(await audit(c, action="pull")) == 1
        finally:
            await registry.close()
