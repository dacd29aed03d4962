"""Trusted keys and what they signed (issue 35, items 1 and 2), with signatures made here
in cosign's format (the e2e tests sign with cosign and skopeo themselves): a signature
counts for a key when it verifies over a payload that names the image in its
repository, whether it arrives as cosign's `.sig` tag or as a referrer; a key added
later is checked against what is stored, a key removed stops counting at once."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from registry.signatures import SIGNATURE_ANNOTATION, SIMPLE_SIGNING
from registry.wiring import Registry
from tests.api.conftest import PASSWORD
from tests.api.console import log_in
from tests.helpers import (
    assert_error,
    basic,
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
    root: httpx.AsyncClient, registry: Registry
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
        assert (await root.get(f"/v2/team/app/manifests/{tag}", headers=accept)).status_code == 200
    await set_policy(root, "enforce")
    assert (await root.get("/v2/team/app/manifests/signed", headers=accept)).status_code == 200
    assert (await root.head(f"/v2/team/app/manifests/{signed}", headers=accept)).status_code == 200
    for tag in ("other", "unsigned"):
        r = await root.get(f"/v2/team/app/manifests/{tag}", headers=accept)
        message = assert_error(r, 403, "DENIED")["message"]
        assert (
            "signed by no key that namespace 'team' trusts" in message and "cosign sign" in message
        )
        r = await root.head(f"/v2/team/app/manifests/{tag}", headers=accept)
        assert r.status_code == 403
    # Signatures stay pullable, so that clients can verify.
    sig = "sha256-" + signed.split(":")[1] + ".sig"
    assert (await root.get(f"/v2/team/app/manifests/{sig}", headers=accept)).status_code == 200
    # A key removed: what only it signed is refused from the next request on.
    assert (await root.delete("/api/v1/namespaces/team/trust/keys/ours")).status_code == 204
    r = await root.get("/v2/team/app/manifests/signed", headers=accept)
    assert_error(r, 403, "DENIED")
    # Refusals are audited (with the pulls' batch) and counted.
    await registry.pulls.flush()
    events = (await root.get("/api/v1/audit", params={"action": "pull.unsigned"})).json()
    assert events["events"] and {e["outcome"] for e in events["events"]} == {"denied"}


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
    assert (await root.get("/v2/team/multi/manifests/latest", headers=accept)).status_code == 200
    assert (await root.get(f"/v2/team/multi/manifests/{amd}", headers=accept)).status_code == 200
    r = await root.get(f"/v2/team/multi/manifests/{loose}", headers=accept)
    assert_error(r, 403, "DENIED")


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
