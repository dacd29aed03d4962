"""Bounds on what a request may ask (limits.*), and the inputs that once made a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from registry.app import create_app
from registry.config import Settings
from registry.mediatypes import OCI_MANIFEST
from tests.helpers import assert_error, descriptor, push_blob, push_image, sha256

pytestmark = pytest.mark.anyio

LAYER = "application/vnd.oci.image.layer.v1.tar"
HUGE = "9" * 5000
# Digits of other scripts: str.isdigit takes them, int too, the HTTP grammar does not.
ARABIC_ZERO, ARABIC_ONE, ARABIC_TWO = "\u0660", "\u0661", "\u0662"


def image_with(layers: int, config: bytes = b"{}") -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(str(i).encode(), LAYER) for i in range(layers)],
        }
    ).encode()


@pytest.fixture
async def limited(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        make_settings(
            limits_json_depth="8", limits_manifest_descriptors="3", limits_query_bytes="1024"
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://registry.test"
    ) as c:
        yield c
    await app.state.registry.close()


@pytest.mark.parametrize("depth", [1000, 100_000])
async def test_deeply_nested_manifest(client: httpx.AsyncClient, depth: int) -> None:
    body = b'{"schemaVersion": 2, "annotations": ' + b"[" * depth + b"]" * depth + b"}"
    r = await client.put(
        "/v2/team/app/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert "deeper than 64" in assert_error(r, 400, "MANIFEST_INVALID")["message"]


async def test_json_depth_limit(limited: httpx.AsyncClient) -> None:
    await push_blob(limited, "team/app", b"{}")
    doc = json.loads(image_with(0))
    doc["annotations"] = {"a": "b"}
    body = json.dumps(doc).encode()
    r = await limited.put(
        "/v2/team/app/manifests/ok", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    doc["extra"] = [[[[[[[[[]]]]]]]]]
    r = await limited.put(
        "/v2/team/app/manifests/deep",
        content=json.dumps(doc).encode(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert "deeper than 8" in assert_error(r, 400, "MANIFEST_INVALID")["message"]


async def test_descriptor_limit(limited: httpx.AsyncClient) -> None:
    for i in range(3):
        await push_blob(limited, "team/app", str(i).encode())
    await push_blob(limited, "team/app", b"{}")
    r = await limited.put(
        "/v2/team/app/manifests/three",
        content=image_with(3),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    r = await limited.put(
        "/v2/team/app/manifests/four", content=image_with(4), headers={"Content-Type": OCI_MANIFEST}
    )
    error = assert_error(r, 400, "MANIFEST_INVALID")
    assert error["detail"] == {"descriptors": 4, "limit": 3}


async def test_the_largest_manifest_allowed_is_checked_in_one_piece(
    client: httpx.AsyncClient,
) -> None:
    """10,000 layers (the default limit) stay within the databases' bound parameters."""
    await push_blob(client, "team/app", b"{}")
    r = await client.put(
        "/v2/team/app/manifests/big",
        content=image_with(10_000),
        headers={"Content-Type": OCI_MANIFEST},
    )
    error = assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert error["detail"]["digest"].startswith("sha256:")


async def test_query_string_limit(limited: httpx.AsyncClient) -> None:
    await push_image(limited, "team/app", "v1", layers=[])
    r = await limited.get("/v2/team/app/tags/list", params={"last": "x" * 1100})
    assert "1024" in assert_error(r, 414, "SIZE_INVALID")["message"]
    # Answered like any /v2/ answer: with the API version and the request's ID.
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert r.headers["X-Request-ID"]
    r = await limited.get("/v2/team/app/tags/list", params={"last": "x" * 900})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v2/a%00b/manifests/v1", 400, "NAME_INVALID"),
        ("/v2/team/app/manifests/v%0A1", 404, "MANIFEST_UNKNOWN"),
        ("/v2/team/app/manifests/v%001", 404, "MANIFEST_UNKNOWN"),
        ("/v2/team/app/blobs/sha256:%00", 400, "DIGEST_INVALID"),
        ("/v2/team/app/blobs/uploads/%00", 404, "BLOB_UPLOAD_UNKNOWN"),
        ("/api/v1/users/a%00b/tokens", 404, "UNSUPPORTED"),
        ("/api/v1/namespaces/a%1Bb/members", 404, "UNSUPPORTED"),
        ("/ui/namespaces/a%00b", 404, "UNSUPPORTED"),
    ],
)
async def test_a_control_character_in_the_path_names_nothing(
    client: httpx.AsyncClient, path: str, status: int, code: str
) -> None:
    """%00 and its kind decode into the path; PostgreSQL refuses a NUL in text, so they
    never reach a query (a 500 there before, outside /v2/, which checks its names)."""
    assert_error(await client.get(path), status, code)


@pytest.mark.parametrize("n", ["²", ARABIC_ONE, HUGE, "1e3", " 5", "0x10", "+1"])
@pytest.mark.parametrize("path", ["/v2/_catalog", "/v2/team/app/tags/list"])
async def test_page_sizes_that_are_not_plain_numbers(
    client: httpx.AsyncClient, path: str, n: str
) -> None:
    await push_image(client, "team/app", "v1")
    assert_error(await client.get(path, params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")


async def test_a_twenty_digit_page_size_is_a_large_page(client: httpx.AsyncClient) -> None:
    await push_image(client, "team/app", "v1")
    r = await client.get("/v2/team/app/tags/list", params={"n": "9" * 20})
    assert r.json()["tags"] == ["v1"]


@pytest.mark.parametrize(
    "header",
    [
        f"bytes={HUGE}-",
        f"bytes=0-{HUGE}",
        f"bytes=-{HUGE}",
        "bytes=²-",
        f"bytes={ARABIC_ONE}-{ARABIC_TWO}",
    ],
)
async def test_ranges_with_numbers_that_are_not_plain(
    client: httpx.AsyncClient, header: str
) -> None:
    digest = await push_blob(client, "team/app", b"0123456789")
    for method in ("GET", "HEAD"):
        r = await client.request(
            method, f"/v2/team/app/blobs/{digest}", headers={"Range": header.encode()}
        )
        assert r.status_code == 416, (method, header)
        assert r.headers["Content-Range"] == "bytes */10"


@pytest.mark.parametrize(
    "content_range", [f"0-{HUGE}", f"{HUGE}-{HUGE}", "0-²", f"{ARABIC_ZERO}-{ARABIC_TWO}"]
)
async def test_content_ranges_with_numbers_that_are_not_plain(
    client: httpx.AsyncClient, content_range: str
) -> None:
    r = await client.post("/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]
    r = await client.patch(
        location, content=b"x", headers={"Content-Range": content_range.encode()}
    )
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Range"] == "0-0"


async def test_content_length_that_is_not_plain_is_not_trusted(client: httpx.AsyncClient) -> None:
    """small_body reads what comes; a Content-Length it cannot read is ignored."""
    body = image_with(0)
    await push_blob(client, "team/app", b"{}")
    request = client.build_request(
        "PUT",
        "/v2/team/app/manifests/v1",
        content=body,
        headers={"Content-Type": OCI_MANIFEST, "Content-Length": "²".encode("latin-1")},
    )
    assert request.headers.raw[-1] == (b"Content-Length", b"\xb2")
    r = await client.send(request)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(body)
