import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from registry.app import create_app
from registry.config import Settings
from registry.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from tests.helpers import (
    EMPTY_CONFIG,
    EMPTY_CONFIG_TYPE,
    assert_error,
    config_only_manifest,
    descriptor,
    index_of,
    push_blob,
    push_image,
    put_manifest,
    sha256,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
async def test_put_and_get_by_tag_and_digest(client: httpx.AsyncClient, media_type: str) -> None:
    digest, body = await push_image(client, "team/app", "v1", media_type=media_type)
    for reference in ("v1", digest):
        r = await client.get(f"/v2/team/app/manifests/{reference}", headers={"Accept": media_type})
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["Content-Type"] == media_type
        assert r.headers["Docker-Content-Digest"] == digest
        head = await client.head(
            f"/v2/team/app/manifests/{reference}", headers={"Accept": media_type}
        )
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(body))
        assert head.content == b""
    # A manifest is a blob of its repository as well.
    assert (await client.get(f"/v2/team/app/blobs/{digest}")).content == body


async def test_put_response_headers(client: httpx.AsyncClient) -> None:
    body = await config_only_manifest(client, "team/app")
    r = await client.put(
        "/v2/team/app/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/team/app/manifests/{sha256(body)}"
    assert "OCI-Subject" not in r.headers


async def test_content_is_kept_byte_for_byte(client: httpx.AsyncClient) -> None:
    config = await push_blob(client, "team/app", b"cfg")
    config_type = "application/vnd.oci.image.config.v1+json"
    body = (
        f'{{  "schemaVersion":2, "mediaType": "{OCI_MANIFEST}",\n'
        f'"config":{{"mediaType":"{config_type}","digest":"{config}","size":3, "data": "Y2Zn"}},'
        '"layers":[],"x-custom":{"keep":[1,2.50,"\\u00e9"]}}\n'
    ).encode()
    digest = await put_manifest(client, "team/app", "custom", body, OCI_MANIFEST)
    assert (await client.get(f"/v2/team/app/manifests/{digest}")).content == body


async def test_put_by_digest_with_tags(client: httpx.AsyncClient) -> None:
    body = await config_only_manifest(client, "team/app")
    r = await client.put(
        f"/v2/team/app/manifests/{sha256(body)}?tag=a&tag=b",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201
    assert r.headers.get_list("OCI-Tag") == ["a", "b"]
    for tag in ("a", "b"):
        assert (await client.get(f"/v2/team/app/manifests/{tag}")).content == body


async def test_digest_mismatch(client: httpx.AsyncClient) -> None:
    body = await config_only_manifest(client, "team/app")
    wrong = sha256(b"other")
    r = await client.put(
        f"/v2/team/app/manifests/{wrong}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(
        await client.get(f"/v2/team/app/manifests/{sha256(body)}"), 404, "MANIFEST_UNKNOWN"
    )


async def test_missing_blob(client: httpx.AsyncClient) -> None:
    config = await push_blob(client, "team/app", b"cfg")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": 3,
            },
            "layers": [descriptor(b"missing layer", "application/vnd.oci.image.layer.v1.tar")],
        }
    ).encode()
    r = await client.put(
        "/v2/team/app/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    error = assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert error["detail"] == {"digest": sha256(b"missing layer")}
    assert_error(await client.get("/v2/team/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")


async def test_blob_of_another_repository_is_not_enough(client: httpx.AsyncClient) -> None:
    await push_image(client, "team/one", "v1", layers=[b"shared"])
    await push_blob(client, "team/two", b"cfg")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(b"cfg", "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(b"shared", "application/vnd.oci.image.layer.v1.tar")],
        }
    ).encode()
    r = await client.put(
        "/v2/team/two/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")


async def test_index_needs_its_children(client: httpx.AsyncClient) -> None:
    _, child = await push_image(client, "team/app", "amd64")
    body = index_of([(OCI_MANIFEST, child, None), (OCI_MANIFEST, b'{"not":"pushed"}', None)])
    r = await client.put(
        "/v2/team/app/manifests/multi", content=body, headers={"Content-Type": OCI_INDEX}
    )
    error = assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert error["detail"] == {"digest": sha256(b'{"not":"pushed"}')}


async def test_nested_and_empty_indexes(client: httpx.AsyncClient) -> None:
    _, child = await push_image(client, "team/app", "amd64")
    inner = index_of([(OCI_MANIFEST, child, {"os": "linux", "architecture": "amd64"})])
    await put_manifest(client, "team/app", "inner", inner, OCI_INDEX)
    outer = index_of([(OCI_INDEX, inner, None)])
    digest = await put_manifest(client, "team/app", "outer", outer, OCI_INDEX)
    assert (
        await client.get(f"/v2/team/app/manifests/{digest}", headers={"Accept": OCI_INDEX})
    ).content == outer
    empty = index_of([])
    await put_manifest(client, "team/app", "empty", empty, OCI_INDEX)
    assert (await client.get("/v2/team/app/manifests/empty")).json()["manifests"] == []


async def test_docker_manifest_list(client: httpx.AsyncClient) -> None:
    _, amd = await push_image(client, "team/app", "amd64", media_type=DOCKER_MANIFEST)
    _, arm = await push_image(client, "team/app", "arm64", media_type=DOCKER_MANIFEST)
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [
            descriptor(amd, DOCKER_MANIFEST, platform={"os": "linux", "architecture": "amd64"}),
            descriptor(arm, DOCKER_MANIFEST, platform={"os": "linux", "architecture": "arm64"}),
        ],
    }
    body = json.dumps(doc).encode()
    await put_manifest(client, "team/app", "multi", body, DOCKER_MANIFEST_LIST)
    r = await client.get(
        "/v2/team/app/manifests/multi",
        headers={"Accept": f"{DOCKER_MANIFEST_LIST}, {DOCKER_MANIFEST}"},
    )
    assert r.headers["Content-Type"] == DOCKER_MANIFEST_LIST
    # A client that cannot read lists gets the linux/amd64 image for a tag.
    r = await client.get("/v2/team/app/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 200
    assert r.content == amd


async def test_accept_negotiation(client: httpx.AsyncClient) -> None:
    _, body = await push_image(client, "team/app", "v1", media_type=OCI_MANIFEST)
    r = await client.get("/v2/team/app/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert_error(r, 404, "MANIFEST_UNKNOWN")
    for accept in ("*/*", "application/*", f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5"):
        r = await client.get("/v2/team/app/manifests/v1", headers={"Accept": accept})
        assert r.status_code == 200
        assert r.content == body
    r = await client.get(
        "/v2/team/app/manifests/v1", headers=[("Accept", DOCKER_MANIFEST), ("Accept", OCI_MANIFEST)]
    )
    assert r.status_code == 200


async def test_artifact_with_empty_config(client: httpx.AsyncClient) -> None:
    await push_blob(client, "team/app", EMPTY_CONFIG)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": descriptor(EMPTY_CONFIG, EMPTY_CONFIG_TYPE),
            "layers": [],
            "annotations": {"org.example": "yes"},
        }
    ).encode()
    digest = await put_manifest(client, "team/app", "sbom", body, OCI_MANIFEST)
    assert (await client.get(f"/v2/team/app/manifests/{digest}")).content == body


async def test_manifest_too_large(client: httpx.AsyncClient) -> None:
    body = b'{"schemaVersion":2,"pad":"' + b"x" * (4 * 1024 * 1024) + b'"}'
    r = await client.put(
        "/v2/team/app/manifests/big", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(r, 413, "SIZE_INVALID")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", OCI_MANIFEST),
        (b"[1,2]", OCI_MANIFEST),
        (b'{"schemaVersion": 3, "config": {}}', OCI_MANIFEST),
        (
            b'{"schemaVersion": 2, "mediaType": "%s", "layers": []}' % OCI_MANIFEST.encode(),
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "mediaType": "%s", "manifests": []}' % OCI_INDEX.encode(),
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:00", "size": 1}}',
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "%s", "size": -1}}'
            % sha256(b"").encode(),
            OCI_MANIFEST,
        ),
        (b'{"schemaVersion": 2, "manifests": "nope"}', OCI_INDEX),
        (b'{"schemaVersion": 2}', "application/vnd.example.unknown+json"),
        (
            b'{"schemaVersion": 1, "name": "team/app", "tag": "v1", "fsLayers": []}',
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        (
            b'{"schemaVersion": 1, "name": "team/app", "tag": "v1", "fsLayers": []}',
            "application/json",
        ),
    ],
)
async def test_invalid_manifests(client: httpx.AsyncClient, body: bytes, content_type: str) -> None:
    r = await client.put(
        "/v2/team/app/manifests/bad", content=body, headers={"Content-Type": content_type}
    )
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["code"] in ("MANIFEST_INVALID", "DIGEST_INVALID")


async def test_schema1_is_refused_with_a_clear_message(client: httpx.AsyncClient) -> None:
    r = await client.put(
        "/v2/team/app/manifests/old",
        content=b'{"schemaVersion": 1, "fsLayers": []}',
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
    )
    assert "schema 1" in assert_error(r, 400, "MANIFEST_INVALID")["message"]


async def test_invalid_tag(client: httpx.AsyncClient) -> None:
    r = await client.put(
        "/v2/team/app/manifests/-bad", content=b"{}", headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(r, 400, "TAG_INVALID")
    r = await client.put(
        f"/v2/team/app/manifests/{'a' * 129}", content=b"{}", headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(r, 400, "TAG_INVALID")


async def test_unknown_manifest(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v2/team/app/manifests/nope"), 404, "MANIFEST_UNKNOWN")
    assert_error(
        await client.get(f"/v2/team/app/manifests/{sha256(b'x')}"), 404, "MANIFEST_UNKNOWN"
    )
    assert (await client.head("/v2/team/app/manifests/nope")).status_code == 404


@pytest.mark.parametrize(
    "reference", [".INVALID_MANIFEST_NAME", "sha256:bad", "md5:" + "0" * 32, "-x", "a" * 129]
)
async def test_a_reference_that_is_neither_tag_nor_digest_names_nothing(
    client: httpx.AsyncClient, reference: str
) -> None:
    """As Distribution and the conformance suite: 404 MANIFEST_UNKNOWN on reads and
    deletes; a PUT still says what is wrong with the tag or digest."""
    await push_image(client, "team/app", "v1")
    path = f"/v2/team/app/manifests/{reference}"
    assert_error(await client.get(path), 404, "MANIFEST_UNKNOWN")
    head = await client.head(path)
    assert head.status_code == 404 and head.content == b""
    assert_error(await client.delete(path), 404, "MANIFEST_UNKNOWN")
    r = await client.put(path, content=b"{}", headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] in ("TAG_INVALID", "DIGEST_INVALID")


async def test_delete_by_digest(client: httpx.AsyncClient) -> None:
    digest, _ = await push_image(client, "team/app", "v1")
    r = await client.delete(f"/v2/team/app/manifests/{digest}")
    assert r.status_code == 202
    assert_error(await client.get(f"/v2/team/app/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    assert_error(await client.get("/v2/team/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert_error(await client.delete(f"/v2/team/app/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    assert (await client.get("/v2/team/app/tags/list")).json()["tags"] == []


async def test_delete_by_tag_removes_only_the_tag(client: httpx.AsyncClient) -> None:
    digest, body = await push_image(client, "team/app", "v1")
    r = await client.put(
        "/v2/team/app/manifests/v2", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201
    assert (await client.delete("/v2/team/app/manifests/v1")).status_code == 202
    assert_error(await client.get("/v2/team/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert (await client.get("/v2/team/app/manifests/v2")).content == body
    assert (await client.get(f"/v2/team/app/manifests/{digest}")).status_code == 200
    assert_error(await client.delete("/v2/team/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")


async def test_retag_moves_the_tag(client: httpx.AsyncClient) -> None:
    first, _ = await push_image(client, "team/app", "latest", layers=[b"one"])
    second, _ = await push_image(client, "team/app", "latest", layers=[b"two"])
    assert first != second
    r = await client.get("/v2/team/app/manifests/latest")
    assert r.headers["Docker-Content-Digest"] == second
    assert (await client.get(f"/v2/team/app/manifests/{first}")).status_code == 200


@pytest.fixture
async def sparse(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    """A registry with sparse_manifests on."""
    app = create_app(make_settings(sparse_manifests="true"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://registry.test"
    ) as c:
        yield c
    await app.state.registry.close()


async def test_sparse_index_and_manifest_without_their_content(
    sparse: httpx.AsyncClient,
) -> None:
    """As Quay's sparse indexes: children and blobs need not be here; what is stored
    is served, and what is missing is unknown."""
    layer = descriptor(b"never pushed", "application/vnd.oci.image.layer.v1.tar")
    image = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(b"{}", "application/vnd.oci.image.config.v1+json"),
            "layers": [layer],
        }
    ).encode()
    image_digest = await put_manifest(sparse, "team/app", "amd64", image, OCI_MANIFEST)
    arm = b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'","not":"pushed"}'
    index = index_of(
        [
            (OCI_MANIFEST, image, {"os": "linux", "architecture": "amd64"}),
            (OCI_MANIFEST, arm, {"os": "linux", "architecture": "arm64"}),
        ]
    )
    index_digest = await put_manifest(sparse, "team/app", "multi", index, OCI_INDEX)

    r = await sparse.get("/v2/team/app/manifests/multi", headers={"Accept": OCI_INDEX})
    assert r.status_code == 200 and r.content == index
    assert (await sparse.head(f"/v2/team/app/manifests/{index_digest}")).status_code == 200
    assert (await sparse.get(f"/v2/team/app/manifests/{image_digest}")).content == image
    tags = (await sparse.get("/v2/team/app/tags/list")).json()["tags"]
    assert tags == ["amd64", "multi"]
    assert_error(await sparse.get(f"/v2/team/app/manifests/{sha256(arm)}"), 404, "MANIFEST_UNKNOWN")
    assert_error(await sparse.get(f"/v2/team/app/blobs/{layer['digest']}"), 404, "BLOB_UNKNOWN")


async def test_sparse_still_validates_the_manifest(sparse: httpx.AsyncClient) -> None:
    r = await sparse.put(
        "/v2/team/app/manifests/v1",
        content=b'{"schemaVersion": 2, "mediaType": "' + OCI_INDEX.encode() + b'"}',
        headers={"Content-Type": OCI_INDEX},
    )
    assert_error(r, 400, "MANIFEST_INVALID")
