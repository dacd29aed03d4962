"""Trusted keys and what they signed (issue 35, items 1 and 2), with signatures made here
in cosign's format (the e2e tests sign with cosign and skopeo themselves): a signature
counts for a key when it verifies over a payload that names the image in its
repository, whether it arrives as cosign's `.sig` tag or as a referrer; a key added
later is checked against what is stored, a key removed stops counting at once."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from registry.metadata import repositories
from registry.metadata import trust as trust_rows
from registry.metadata.policies import StoredPolicy, save_policy
from registry.signatures import SIGNATURE_ANNOTATION, SIMPLE_SIGNING
from registry.wiring import Registry
from tests.api.conftest import PASSWORD
from tests.api.console import log_in
from tests.helpers import (
    assert_error,
    basic,
    bearer,
    descriptor,
    index_of,
    push_blob,
    push_image,
    put_manifest,
    sha256,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]
COSIGN_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"


class Signer:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.pem = (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self.key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()


def cosign_payload(digest: str, reference: str) -> bytes:
    critical = {
        "identity": {"docker-reference": reference},
        "image": {"docker-manifest-digest": digest},
        "type": "cosign container image signature",
    }
    return json.dumps({"critical": critical, "optional": None}).encode()


async def sign(
    client: httpx.AsyncClient,
    repo: str,
    digest: str,
    signer: Signer,
    *,
    names: str | None = None,
    reference: str | None = None,
    tamper: bool = False,
    referrer: bool = False,
) -> str:
    """Push a cosign signature of `digest` (its payload naming `names`, default the
    image itself) as cosign's tag or as a referrer; the signature manifest's digest."""
    payload = cosign_payload(names or digest, reference or f"registry.test/{repo}:v1")
    signature = signer.sign(payload)
    if tamper:
        payload = payload.replace(b"registry.test", b"registry.evil")
    await push_blob(client, repo, payload)
    config = b"{}"
    await push_blob(client, repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [
            descriptor(payload, SIMPLE_SIGNING, annotations={SIGNATURE_ANNOTATION: signature})
        ],
    }
    if referrer:
        manifest["artifactType"] = COSIGN_ARTIFACT
        manifest["subject"] = {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1}
    body = json.dumps(manifest).encode()
    tag = "sha256-" + digest.split(":")[1] + ".sig"
    return await put_manifest(client, repo, sha256(body) if referrer else tag, body, OCI_MANIFEST)


@pytest.fixture
async def root(auth_app: Starlette, accounts: Accounts) -> AsyncIterator[httpx.AsyncClient]:
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_user("olga", PASSWORD)
    await accounts.add_namespace("team", public=False, owner="olga")
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", headers=basic("root", PASSWORD)
    ) as client:
        yield client


@pytest.fixture
async def reader(root: httpx.AsyncClient, accounts: Accounts) -> AsyncIterator[httpx.AsyncClient]:
    """A member of team who may pull only: the one a signature policy protects."""
    await accounts.add_user("rita", PASSWORD)
    await accounts.set_member("team", "rita", "guest")
    async with httpx.AsyncClient(
        transport=root._transport, base_url="http://registry.test", headers=basic("rita", PASSWORD)
    ) as client:
        yield client


@pytest.fixture
def registry(auth_app: Starlette) -> Registry:
    found: Registry = auth_app.state.registry
    return found


async def signed_by(registry: Registry, repo: str, digest: str) -> list[str]:
    async with registry.db.read() as conn:
        rows = await conn.execute(
            text(
                "SELECT k.name FROM signature_verdicts v JOIN trusted_keys k ON k.id = v.key_id "
                "JOIN manifests m ON m.id = v.manifest_id JOIN repositories r ON "
                "r.id = m.repository_id WHERE r.name = :repo AND m.digest = :digest ORDER BY 1"
            ),
            {"repo": repo, "digest": digest},
        )
        return [row[0] for row in rows]


async def test_keys_are_kept_per_namespace_and_for_the_registry(root: httpx.AsyncClient) -> None:
    ours = Signer()
    r = await root.post("/api/v1/trust/keys", json={"name": "release", "pem": ours.pem})
    assert r.status_code == 201, r.text
    key = r.json()
    assert key["namespace"] == "" and key["algorithm"] == "ecdsa-secp256r1"
    assert key["fingerprint"].startswith("sha256:")
    again = await root.post("/api/v1/trust/keys", json={"name": "other", "pem": ours.pem})
    assert "this very key" in assert_error(again, 409, "CONFLICT")["message"]
    r = await root.post("/api/v1/trust/keys", json={"name": "bad", "pem": "nope"})
    assert "not a PEM public key" in assert_error(r, 400, "INVALID")["message"]
    olga = basic("olga", PASSWORD)
    r = await root.post(
        "/api/v1/namespaces/team/trust/keys",
        json={"name": "team-ci", "pem": Signer().pem},
        headers=olga,
    )
    assert r.status_code == 201, r.text
    listed = (await root.get("/api/v1/namespaces/team/trust/keys", headers=olga)).json()
    assert [k["name"] for k in listed["keys"]] == ["team-ci"]
    assert_error(await root.get("/api/v1/trust/keys", headers=olga), 403, "DENIED")
    r = await root.delete("/api/v1/namespaces/team/trust/keys/team-ci", headers=olga)
    assert r.status_code == 204
    r = await root.delete("/api/v1/namespaces/team/trust/keys/team-ci", headers=olga)
    assert_error(r, 404, "NOT_FOUND")
    events = (await root.get("/api/v1/audit", params={"action": "trust."})).json()["events"]
    assert [e["action"] for e in events] == [
        "trust.key.delete",
        "trust.key.create",
        "trust.key.create",
    ]


async def test_a_signature_counts_for_the_key_that_made_it_over_this_image_only(
    root: httpx.AsyncClient, registry: Registry
) -> None:
    ours, theirs = Signer(), Signer()
    r = await root.post(
        "/api/v1/namespaces/team/trust/keys", json={"name": "ours", "pem": ours.pem}
    )
    assert r.status_code == 201
    good, _ = await push_image(root, "team/app", "v1", layers=[b"good"])
    await sign(root, "team/app", good, ours)
    assert await signed_by(registry, "team/app", good) == ["ours"]
    # Refused, each: another key; a payload naming another digest; another repository;
    # a tampered payload; a referrer made by another key.
    cases = {
        "theirs": {"signer": theirs},
        "other digest": {"names": "sha256:" + "0" * 64},
        "other repository": {"reference": "registry.test/team/other:v1"},
        "tampered": {"tamper": True},
    }
    for n, (label, case) in enumerate(cases.items()):
        digest, _ = await push_image(root, "team/app", f"bad{n}", layers=[label.encode()])
        await sign(root, "team/app", digest, **{"signer": ours, **case})  # type: ignore[arg-type]
        assert await signed_by(registry, "team/app", digest) == [], label
    # The referrers form counts the same way.
    referred, _ = await push_image(root, "team/app", "ref", layers=[b"referred"])
    await sign(root, "team/app", referred, ours, referrer=True)
    assert await signed_by(registry, "team/app", referred) == ["ours"]
    await sign(root, "team/app", referred, theirs, referrer=True)
    assert await signed_by(registry, "team/app", referred) == ["ours"]


async def test_the_browse_api_and_a_signature_event_say_which_keys_signed(
    root: httpx.AsyncClient,
) -> None:
    ours, theirs = Signer(), Signer()
    for name, signer in (("ours", ours), ("theirs", theirs)):
        await root.post("/api/v1/trust/keys", json={"name": name, "pem": signer.pem})
    digest, _ = await push_image(root, "team/app", "v1")
    await push_image(root, "team/app", "v2", layers=[b"unsigned"])
    await sign(root, "team/app", digest, ours)
    await sign(root, "team/app", digest, theirs, referrer=True)
    await sign(root, "team/app", digest, ours)  # the same again: no second event
    tags = (await root.get("/api/v1/repositories/team/app/-/tags")).json()["tags"]
    assert {t["name"]: t["signed_by"] for t in tags if not t["name"].endswith(".sig")} == {
        "v1": ["ours", "theirs"],
        "v2": [],
    }
    detail = (await root.get(f"/api/v1/repositories/team/app/-/manifests/{digest}")).json()
    assert detail["signed_by"] == ["ours", "theirs"]
    events = (await root.get("/api/v1/audit", params={"action": "signature"})).json()["events"]
    assert sorted(e["detail"]["keys"][0] for e in events) == ["ours", "theirs"]
    assert {e["target"]["digest"] for e in events} == {digest}


async def test_a_key_added_later_counts_for_what_it_signed_before_and_a_removed_one_stops(
    root: httpx.AsyncClient, registry: Registry
) -> None:
    late = Signer()
    digest, _ = await push_image(root, "team/app", "v1")
    await sign(root, "team/app", digest, late)
    assert await signed_by(registry, "team/app", digest) == []
    r = await root.post("/api/v1/trust/keys", json={"name": "late", "pem": late.pem})
    assert r.status_code == 201 and r.json()["scanned"] is False
    assert await registry.trust.scan_step() == 1
    assert await signed_by(registry, "team/app", digest) == ["late"]
    assert (await root.get("/api/v1/trust/keys")).json()["keys"][0]["scanned"] is True
    assert await registry.trust.scan_step() == 0  # done once
    assert (await root.delete("/api/v1/trust/keys/late")).status_code == 204
    assert await signed_by(registry, "team/app", digest) == []


async def set_policy(client: httpx.AsyncClient, policy: str) -> None:
    r = await client.patch("/api/v1/namespaces/team/policy", json={"signature_policy": policy})
    assert r.status_code == 200 and r.json()["signature_policy"] == policy, r.text


async def test_enforce_refuses_what_no_trusted_key_signed_and_serves_the_rest(
    root: httpx.AsyncClient, reader: httpx.AsyncClient, registry: Registry
) -> None:
    ours, theirs = Signer(), Signer()
    await root.post("/api/v1/namespaces/team/trust/keys", json={"name": "ours", "pem": ours.pem})
    signed, _ = await push_image(root, "team/app", "signed", layers=[b"signed"])
    await sign(root, "team/app", signed, ours)
    other, _ = await push_image(root, "team/app", "other", layers=[b"other key"])
    await sign(root, "team/app", other, theirs)
    await push_image(root, "team/app", "unsigned", layers=[b"unsigned"])
    accept = {"Accept": OCI_MANIFEST}
    for tag in ("signed", "other", "unsigned"):  # off: everything, as before
        assert (
            await reader.get(f"/v2/team/app/manifests/{tag}", headers=accept)
        ).status_code == 200
    await set_policy(root, "enforce")
    assert (await reader.get("/v2/team/app/manifests/signed", headers=accept)).status_code == 200
    assert (
        await reader.head(f"/v2/team/app/manifests/{signed}", headers=accept)
    ).status_code == 200
    for tag in ("other", "unsigned"):
        r = await reader.get(f"/v2/team/app/manifests/{tag}", headers=accept)
        message = assert_error(r, 403, "DENIED")["message"]
        assert (
            "signed by no key that namespace 'team' trusts" in message and "cosign sign" in message
        )
        r = await reader.head(f"/v2/team/app/manifests/{tag}", headers=accept)
        assert r.status_code == 403
    # Signatures stay pullable, so that clients can verify.
    sig = "sha256-" + signed.split(":")[1] + ".sig"
    assert (await reader.get(f"/v2/team/app/manifests/{sig}", headers=accept)).status_code == 200
    # A key removed: what only it signed is refused from the next request on.
    assert (await root.delete("/api/v1/namespaces/team/trust/keys/ours")).status_code == 204
    r = await reader.get("/v2/team/app/manifests/signed", headers=accept)
    assert_error(r, 403, "DENIED")
    # Refusals are audited (with the pulls' batch) and counted.
    await registry.pulls.flush()
    events = (await root.get("/api/v1/audit", params={"action": "pull.unsigned"})).json()
    assert events["events"] and {e["outcome"] for e in events["events"]} == {"denied"}


async def test_under_enforce_who_may_push_reads_what_they_sign_and_a_puller_does_not(
    root: httpx.AsyncClient, reader: httpx.AsyncClient, registry: Registry
) -> None:
    """cosign GETs the image it signs, with a pull-only token: who may push to the
    repository reads an unsigned image (and is audited); who may only pull is refused,
    with a token or with Basic credentials."""
    await push_image(root, "team/app", "unsigned", layers=[b"unsigned"])
    await set_policy(root, "enforce")
    accept = {"Accept": OCI_MANIFEST}

    async def token(client: httpx.AsyncClient) -> dict[str, str]:
        r = await client.get(
            "/token", params={"service": "registry", "scope": "repository:team/app:pull"}
        )
        return {**bearer(r.json()["token"]), **accept}

    r = await root.get("/v2/team/app/manifests/unsigned", headers=await token(root))
    assert r.status_code == 200
    r = await reader.get("/v2/team/app/manifests/unsigned", headers=await token(reader))
    assert_error(r, 403, "DENIED")
    assert_error(await reader.get("/v2/team/app/manifests/unsigned", headers=accept), 403, "DENIED")
    await registry.pulls.flush()
    events = (await root.get("/api/v1/audit", params={"action": "pull.unsigned"})).json()
    assert sorted((e["outcome"], e["detail"].get("read_by")) for e in events["events"]) == [
        ("denied", None),
        ("denied", None),
        ("success", "pusher"),
    ]


async def test_audit_serves_unsigned_pulls_and_records_them(
    root: httpx.AsyncClient, registry: Registry
) -> None:
    await push_image(root, "team/app", "unsigned", layers=[b"unsigned"])
    await set_policy(root, "audit")
    r = await root.get("/v2/team/app/manifests/unsigned", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    await registry.pulls.flush()
    (event,) = (await root.get("/api/v1/audit", params={"action": "pull.unsigned"})).json()[
        "events"
    ]
    assert event["outcome"] == "success" and event["detail"] == {"policy": "audit"}
    assert event["target"]["tag"] == "unsigned"


async def test_a_signed_index_vouches_for_its_platforms_pulled_by_digest(
    root: httpx.AsyncClient,
    reader: httpx.AsyncClient,
) -> None:
    ours = Signer()
    await root.post("/api/v1/trust/keys", json={"name": "ours", "pem": ours.pem})
    amd, amd_body = await push_image(root, "team/multi", "amd64", layers=[b"amd"])
    loose, _ = await push_image(root, "team/multi", "loose", layers=[b"loose"])
    index = index_of([(OCI_MANIFEST, amd_body, {"os": "linux", "architecture": "amd64"})])
    top = await put_manifest(root, "team/multi", "latest", index, OCI_INDEX)
    await sign(root, "team/multi", top, ours)
    await set_policy(root, "enforce")
    accept = {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}
    assert (await reader.get("/v2/team/multi/manifests/latest", headers=accept)).status_code == 200
    assert (await reader.get(f"/v2/team/multi/manifests/{amd}", headers=accept)).status_code == 200
    r = await reader.get(f"/v2/team/multi/manifests/{loose}", headers=accept)
    assert_error(r, 403, "DENIED")

    async def pulled(reference: str) -> int:
        return (
            await reader.get(f"/v2/team/multi/manifests/{reference}", headers=accept)
        ).status_code

    # Two keys sign the index; one removed, the other still vouches for the platform.
    second = Signer()
    await root.post("/api/v1/trust/keys", json={"name": "second", "pem": second.pem})
    await sign(root, "team/multi", top, second, referrer=True)
    assert (await root.delete("/api/v1/trust/keys/ours")).status_code == 204
    assert (await pulled(top), await pulled(amd)) == (200, 200)
    # The index deleted: its platform, signed through it alone, is refused from then on.
    assert (await root.delete(f"/v2/team/multi/manifests/{top}")).status_code == 202
    assert await pulled(amd) == 403
    # Signed again through the index pushed again; its last key removed: both refused.
    top = await put_manifest(root, "team/multi", "latest", index, OCI_INDEX)
    await sign(root, "team/multi", top, second)
    assert (await pulled(top), await pulled(amd)) == (200, 200)
    assert (await root.delete("/api/v1/trust/keys/second")).status_code == 204
    assert (await pulled(top), await pulled(amd)) == (403, 403)


async def test_keys_removed_with_their_namespace_stop_counting(
    root: httpx.AsyncClient, registry: Registry
) -> None:
    ours = Signer()
    await root.post("/api/v1/namespaces/team/trust/keys", json={"name": "ours", "pem": ours.pem})
    digest, _ = await push_image(root, "team/app", "v1")
    await sign(root, "team/app", digest, ours)
    assert await manifest_signed(registry, "team/app", digest) is True
    assert (await root.delete("/api/v1/namespaces/team")).status_code == 204
    assert await manifest_signed(registry, "team/app", digest) is False


async def manifest_signed(registry: Registry, repo: str, digest: str) -> bool:
    async with registry.db.read() as conn:
        return bool(
            await conn.scalar(
                text(
                    "SELECT m.signed FROM manifests m JOIN repositories r ON "
                    "r.id = m.repository_id WHERE r.name = :repo AND m.digest = :digest"
                ),
                {"repo": repo, "digest": digest},
            )
        )


async def test_the_console_shows_which_key_signed_each_tag(
    web: httpx.AsyncClient, auth_app: Starlette
) -> None:
    ours = Signer()
    admin = httpx.AsyncClient(transport=web._transport, base_url="http://registry.test")
    admin.headers.update(basic("root", PASSWORD))
    await admin.post("/api/v1/trust/keys", json={"name": "release-2026", "pem": ours.pem})
    signed, _ = await push_image(admin, "team/app", "signed", layers=[b"signed"])
    await sign(admin, "team/app", signed, ours)
    await admin.aclose()
    await log_in(web, "root")
    shown = (await web.get("/ui/r/team/app/-/tags")).text
    row = shown[shown.index(">signed</a>") :]
    assert "<td>release-2026</td>" in row[: row.index("</tr>")]
    v1 = shown[shown.index(">v1</a>") :]
    assert "<td>no trusted key</td>" in v1[: v1.index("</tr>")]


@contextlib.asynccontextmanager
async def held_open(
    registry: Registry, work: Callable[[AsyncConnection], Awaitable[object]]
) -> AsyncIterator[None]:
    """`work` done in a write transaction that stays open until the block ends."""
    done, release = asyncio.Event(), asyncio.Event()

    async def hold(conn: AsyncConnection) -> None:
        await work(conn)
        done.set()
        await release.wait()

    task = asyncio.create_task(registry.db.transact(hold))
    held = asyncio.create_task(done.wait())
    await asyncio.wait({task, held}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        held.cancel()
        task.result()  # the work's own error
    try:
        yield
    finally:
        release.set()
        await task


async def waits(task: asyncio.Future[object]) -> bool:
    await asyncio.sleep(0.3)
    return not task.done()


async def repository_policy(registry: Registry, repo: str) -> str | None:
    async with registry.db.read() as conn:
        found = await conn.scalar(
            text("SELECT signature_policy FROM repositories WHERE name = :repo"), {"repo": repo}
        )
        return None if found is None else str(found)


async def test_a_repository_made_while_its_policy_is_set_takes_the_new_policy(
    root: httpx.AsyncClient, reader: httpx.AsyncClient, registry: Registry
) -> None:
    """The manifest GET reads the policy from the repository's row: one made in a
    transaction still open while the policy is set must not keep the old one (on
    PostgreSQL the setter's update cannot see it), nor one made while the policy is
    being set."""
    async with held_open(registry, lambda conn: repositories.ensure_repository(conn, "team/early")):
        setting = asyncio.ensure_future(set_policy(root, "enforce"))
        assert await waits(setting)  # for the namespace's policy row the repository holds
    await setting
    assert await repository_policy(registry, "team/early") == "enforce"
    # The other way round: a push into a new repository while the policy is being set.
    enforce = StoredPolicy("team", "[]", None, None, "enforce")
    async with held_open(registry, lambda conn: save_policy(conn, enforce)):
        pushing = asyncio.ensure_future(push_image(root, "team/late", "v1"))
        assert await waits(pushing)
    await pushing
    assert await repository_policy(registry, "team/late") == "enforce"
    r = await reader.get("/v2/team/late/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert_error(r, 403, "DENIED")


async def test_a_signature_arriving_while_another_key_is_removed_still_counts(
    root: httpx.AsyncClient, reader: httpx.AsyncClient, registry: Registry
) -> None:
    """Removing a key decides `signed` again for what it signed; a verdict of another key
    for the same image, written meanwhile, must survive that (the two lock the
    manifest's row, and the decision reads a snapshot taken after the lock)."""
    first, second = Signer(), Signer()
    for name, signer in (("first", first), ("second", second)):
        await root.post("/api/v1/trust/keys", json={"name": name, "pem": signer.pem})
    digest, _ = await push_image(root, "team/app", "v1")
    await sign(root, "team/app", digest, first)
    await set_policy(root, "enforce")
    async with held_open(registry, lambda conn: trust_rows.remove_key(conn, "", "first")):
        signing = asyncio.ensure_future(sign(root, "team/app", digest, second, referrer=True))
        await asyncio.sleep(0.3)
    await signing
    assert await signed_by(registry, "team/app", digest) == ["second"]
    assert await manifest_signed(registry, "team/app", digest) is True
    r = await reader.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
