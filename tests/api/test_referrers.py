import json

import httpx
import pytest

from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from tests.helpers import (
    EMPTY_CONFIG,
    EMPTY_CONFIG_TYPE,
    assert_error,
    config_only_manifest,
    descriptor,
    push_blob,
    push_image,
    sha256,
)

pytestmark = pytest.mark.anyio


async def push_artifact(
    client: httpx.AsyncClient, subject: bytes, artifact_type: str, payload: bytes
) -> tuple[str, bytes]:
    await push_blob(client, "team/app", EMPTY_CONFIG)
    await push_blob(client, "team/app", payload)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": descriptor(EMPTY_CONFIG, EMPTY_CONFIG_TYPE),
            "layers": [descriptor(payload, "application/octet-stream")],
            "subject": descriptor(subject, OCI_MANIFEST),
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        }
    ).encode()
    r = await client.put(
        f"/v2/team/app/manifests/{sha256(body)}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == sha256(subject)
    return sha256(body), body


async def test_referrers(client: httpx.AsyncClient) -> None:
    subject_digest, subject = await push_image(client, "team/app", "v1")
    sbom, sbom_body = await push_artifact(client, subject, "application/vnd.example.sbom", b"sbom")
    sig, _ = await push_artifact(client, subject, "application/vnd.example.sig", b"sig")
    r = await client.get(f"/v2/team/app/referrers/{subject_digest}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert set(by_digest) == {sbom, sig}
    assert by_digest[sbom] == {
        "mediaType": OCI_MANIFEST,
        "digest": sbom,
        "size": len(sbom_body),
        "artifactType": "application/vnd.example.sbom",
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }
    assert "OCI-Filters-Applied" not in r.headers


async def test_referrers_filter(client: httpx.AsyncClient) -> None:
    subject_digest, subject = await push_image(client, "team/app", "v1")
    sbom, _ = await push_artifact(client, subject, "application/vnd.example.sbom", b"sbom")
    await push_artifact(client, subject, "application/vnd.example.sig", b"sig")
    r = await client.get(
        f"/v2/team/app/referrers/{subject_digest}",
        params={"artifactType": "application/vnd.example.sbom"},
    )
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [sbom]


async def test_subject_pushed_later(client: httpx.AsyncClient) -> None:
    subject = b'{"schemaVersion":2,"not":"pushed yet"}'
    artifact, _ = await push_artifact(client, subject, "application/vnd.example.sig", b"sig")
    r = await client.get(f"/v2/team/app/referrers/{sha256(subject)}")
    assert [m["digest"] for m in r.json()["manifests"]] == [artifact]


async def test_artifact_type_defaults_to_config_media_type(client: httpx.AsyncClient) -> None:
    subject_digest, subject = await push_image(client, "team/app", "v1")
    body = await config_only_manifest(
        client,
        "team/app",
        "application/vnd.example.config+json",
        subject=descriptor(subject, OCI_MANIFEST),
    )
    await client.put(
        f"/v2/team/app/manifests/{sha256(body)}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    r = await client.get(f"/v2/team/app/referrers/{subject_digest}")
    assert r.json()["manifests"][0]["artifactType"] == "application/vnd.example.config+json"


async def test_unknown_subject_is_an_empty_index(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/v2/nothing/here/referrers/{sha256(b'nothing')}")
    assert r.status_code == 200
    assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


async def test_referrers_invalid_digest(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v2/team/app/referrers/sha256:nope"), 400, "DIGEST_INVALID")


async def test_deleted_referrer_disappears(client: httpx.AsyncClient) -> None:
    subject_digest, subject = await push_image(client, "team/app", "v1")
    sig, _ = await push_artifact(client, subject, "application/vnd.example.sig", b"sig")
    assert (await client.delete(f"/v2/team/app/manifests/{sig}")).status_code == 202
    assert (await client.get(f"/v2/team/app/referrers/{subject_digest}")).json()["manifests"] == []
