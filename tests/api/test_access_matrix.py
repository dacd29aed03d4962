"""Who may do what: every role against every action, in a public and a private namespace
(`members` is adding a member through /api/v1/).

Beyond the roles: `groupdev`, a directory's user who is a developer of both namespaces
through a group only, logging in with a personal access token for every namespace;
`token`, the developer's token that allows pulls in pub only; `sysrobot`, an admin's
robot whose grant is the pattern p* (pub, priv).

The expected answers are written out in full below, not derived from the rules, so a
change to the rules shows up here as a diff in this table.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from registry.mediatypes import OCI_MANIFEST
from registry.metadata.events import AuditFilter
from tests.api.conftest import PASSWORD
from tests.helpers import (
    basic,
    bearer,
    config_only_manifest,
    get_token,
    push_image,
    put_manifest,
)

pytestmark = pytest.mark.anyio

EXPECTED = """
role        namespace  pull  push  delete  catalog  mount  members
anonymous   pub        200   401   401     listed   401    401
anonymous   priv       401   401   401     hidden   401    401
stranger    pub        200   403   403     listed   201    403
stranger    priv       403   403   403     hidden   202    403
guest       pub        200   403   403     listed   201    403
guest       priv       200   403   403     listed   201    403
developer   pub        200   202   403     listed   201    403
developer   priv       200   202   403     listed   201    403
maintainer  pub        200   202   202     listed   201    403
maintainer  priv       200   202   202     listed   201    403
owner       pub        200   202   202     listed   201    204
owner       priv       200   202   202     listed   201    204
admin       pub        200   202   202     listed   201    204
admin       priv       200   202   202     listed   201    204
robot       pub        200   202   403     listed   201    403
robot       priv       200   202   403     listed   201    403
groupdev    pub        200   202   403     listed   201    403
groupdev    priv       200   202   403     listed   201    403
token       pub        200   403   403     listed   403    403
token       priv       403   403   403     hidden   403    403
sysrobot    pub        200   202   202     listed   201    403
sysrobot    priv       200   202   202     listed   201    403
"""
ROWS = [line.split() for line in EXPECTED.strip().splitlines()]
ACTIONS = ROWS[0][2:]
TABLE = {(row[0], row[1]): dict(zip(ACTIONS, row[2:], strict=True)) for row in ROWS[1:]}
ROLES = sorted({role for role, _ in TABLE})

LAYER = b"a layer in every namespace"
# Where each caller may push, as the target of a mount.
MOUNT_TARGET = {
    "anonymous": "pub",
    "robot": "ci",
    "admin": "root",
    "token": "pub",
    "sysrobot": "pub",
}
GROUP = "cn=developers,ou=groups,dc=example,dc=org"


async def _setup(
    app: Starlette, accounts: Accounts, role: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Namespaces `pub` and `priv`, each with `<ns>/app:v1` and a manifest for `role` to
    delete; users in every role. Returns the deletable digests and the credentials of
    the roles that log in with a secret."""
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_namespace("pub", public=True)
    await accounts.add_namespace("priv", public=False)
    await accounts.add_namespace("ci", public=False)
    for role in ("guest", "developer", "maintainer", "owner"):
        await accounts.add_user(role, PASSWORD)
        for namespace in ("pub", "priv"):
            await accounts.set_member(namespace, role, role)
    await accounts.add_user("stranger", PASSWORD)
    secret = await accounts.add_robot(
        "ci", {"pub": ["pull", "push"], "priv": ["pull", "push"], "ci": ["pull", "push"]}
    )
    await accounts.external_login(
        "ldap", "uid=groupdev,ou=people,dc=example,dc=org", "groupdev", frozenset({GROUP})
    )
    for namespace in ("pub", "priv"):
        await accounts.set_group_role("ldap", GROUP, namespace, "developer")
    everything = ["pull", "push", "delete"]
    secrets = {
        "robot": secret,
        "groupdev": await accounts.add_token("groupdev", "all", [("*", everything)], None),
        "token": await accounts.add_token("developer", "narrow", [("pub", ["pull"])], None),
        "sysrobot": await accounts.add_robot("sys", {}, None, {"p*": everything}),
    }
    transport = httpx.ASGITransport(app=app)
    digests = {}
    # Basic credentials: checked once and remembered, where tokens would cost a login each.
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", headers=basic("root", PASSWORD)
    ) as admin:
        for namespace in ("pub", "priv"):
            repo = f"{namespace}/app"
            await push_image(admin, repo, "v1", layers=[LAYER])
            body = await config_only_manifest(admin, repo, annotations={"for": role})
            digests[namespace] = await put_manifest(admin, repo, "doomed", body, OCI_MANIFEST)
    return digests, secrets


LOGINS = {"admin": "root", "robot": "robot$ci", "token": "developer", "sysrobot": "robot$sys"}


def _credentials(role: str, secrets: dict[str, str]) -> dict[str, str]:
    if role == "anonymous":
        return {}
    return {"user": LOGINS.get(role, role), "password": secrets.get(role, PASSWORD)}


@pytest.mark.parametrize("role", ROLES)
async def test_access_matrix(
    auth_app: Starlette, accounts: Accounts, anon: httpx.AsyncClient, role: str
) -> None:
    digests, secrets = await _setup(auth_app, accounts, role)
    creds = _credentials(role, secrets)
    layer = "sha256:" + hashlib.sha256(LAYER).hexdigest()
    target = MOUNT_TARGET.get(role, role)
    actual: dict[tuple[str, str], dict[str, str]] = {}
    for namespace in ("pub", "priv"):
        repo = f"{namespace}/app"
        got: dict[str, str] = {}

        token = await get_token(anon, f"repository:{repo}:pull", **creds)
        r = await anon.get(f"/v2/{repo}/manifests/v1", headers=bearer(token))
        got["pull"] = str(r.status_code)

        token = await get_token(anon, f"repository:{repo}:pull,push", **creds)
        r = await anon.post(f"/v2/{repo}/blobs/uploads/", headers=bearer(token))
        got["push"] = str(r.status_code)

        token = await get_token(anon, f"repository:{repo}:delete", **creds)
        r = await anon.delete(f"/v2/{repo}/manifests/{digests[namespace]}", headers=bearer(token))
        got["delete"] = str(r.status_code)

        token = await get_token(anon, "registry:catalog:*", **creds)
        r = await anon.get("/v2/_catalog", headers=bearer(token))
        assert r.status_code == 200, r.text
        got["catalog"] = "listed" if repo in r.json()["repositories"] else "hidden"

        token = await get_token(
            anon, f"repository:{target}/copy:pull,push", f"repository:{repo}:pull", **creds
        )
        r = await anon.post(
            f"/v2/{target}/copy/blobs/uploads/",
            params={"mount": layer, "from": repo},
            headers=bearer(token),
        )
        got["mount"] = str(r.status_code)

        token = await get_token(anon, **creds)
        r = await anon.put(
            f"/api/v1/namespaces/{namespace}/members/stranger",
            json={"role": "guest"},
            headers=bearer(token),
        )
        got["members"] = str(r.status_code)
        actual[(role, namespace)] = got
    assert actual == {key: value for key, value in TABLE.items() if key[0] == role}
    await _audited(auth_app, role, creds.get("user", ""), actual, target)


async def _audited(
    app: Starlette,
    role: str,
    name: str,
    actual: dict[tuple[str, str], dict[str, str]],
    target: str,
) -> None:
    """Every change the matrix made is in the audit log, by the caller, from the
    client's address, with the token it came with; nothing refused is there."""
    rows = await app.state.registry.audit.search(AuditFilter(actor=name), None, 10_000)
    mine = [body for _, body in rows if body["request"]["addr"] == "10.0.0.1"]

    def did(action: str, repository: str) -> list[dict[str, object]]:
        return [
            e
            for e in mine
            if e["action"] == action and e.get("target", {}).get("repository") == repository
        ]

    for (_, namespace), got in actual.items():
        deleted = did("delete", f"{namespace}/app")
        assert len(deleted) == (got["delete"] == "202"), (role, namespace, deleted)
        mounted = did("mount", f"{target}/copy")
        assert len(mounted) >= (got["mount"] == "201")
        members = [e for e in mine if e["action"] == "member.set" and e["namespace"] == namespace]
        assert len(members) == (got["members"] == "204")
        for event in deleted + members:
            assert event["actor"]["name"] == name
            assert event["actor"]["kind"] == ("robot" if "robot" in role else "user")
            assert event["actor"]["token"], event  # which token: its jti
        # The token asked for push: granted or refused, it is audited.
        asked = f"repository:{namespace}/app:push"
        tokens = [e for e in mine if e["action"] == "token" and asked in e["detail"]["requested"]]
        assert [t["outcome"] for t in tokens] == [
            "success" if got["push"] == "202" else "denied"
        ], (role, namespace, tokens)
    if role != "anonymous":
        assert any(e["action"] == "login" and e["outcome"] == "success" for e in mine)
