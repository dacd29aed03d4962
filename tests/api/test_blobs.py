import hashlib
from collections.abc import Callable

import httpx
import pytest

from registry.app import create_app
from registry.config import ConfigError, Settings
from tests.helpers import assert_error, push_blob, sha256

pytestmark = pytest.mark.anyio

DATA = bytes(range(256)) * 40  # 10240 bytes


async def test_head_and_get(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "team/app", DATA)
    head = await client.head(f"/v2/team/app/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(DATA))
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.headers["ETag"] == f'"{digest}"'
    assert head.content == b""
    get = await client.get(f"/v2/team/app/blobs/{digest}")
    assert get.status_code == 200
    assert get.content == DATA
    assert get.headers["Docker-Content-Digest"] == digest


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=100-", 100, len(DATA) - 1),
        ("bytes=-16", len(DATA) - 16, len(DATA) - 1),
        ("bytes=10000-99999", 10000, len(DATA) - 1),
    ],
)
async def test_range(client: httpx.AsyncClient, header: str, start: int, end: int) -> None:
    digest = await push_blob(client, "team/app", DATA)
    r = await client.get(f"/v2/team/app/blobs/{digest}", headers={"Range": header})
    assert r.status_code == 206
    assert r.content == DATA[start : end + 1]
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert r.headers["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize("header", ["bytes=20000-", "bytes=50-10", "bytes=-0", "bytes=abc"])
async def test_unsatisfiable_range(client: httpx.AsyncClient, header: str) -> None:
    digest = await push_blob(client, "team/app", DATA)
    r = await client.get(f"/v2/team/app/blobs/{digest}", headers={"Range": header})
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Content-Range"] == f"bytes */{len(DATA)}"


async def test_unknown_blob(client: httpx.AsyncClient) -> None:
    missing = sha256(b"never pushed")
    assert_error(await client.get(f"/v2/team/app/blobs/{missing}"), 404, "BLOB_UNKNOWN")
    r = await client.head(f"/v2/team/app/blobs/{missing}")
    assert r.status_code == 404


async def test_blob_is_per_repository(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "team/app", DATA)
    assert_error(await client.get(f"/v2/other/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:xyz",
        "sha256:" + "A" * 64,
        "md5:" + "0" * 32,
        "sha256",
        "sha512:" + "0" * 64,
        "notadigest",
    ],
)
async def test_invalid_digest(client: httpx.AsyncClient, digest: str) -> None:
    assert_error(await client.get(f"/v2/team/app/blobs/{digest}"), 400, "DIGEST_INVALID")


async def test_sha512_blob(client: httpx.AsyncClient) -> None:
    digest = "sha512:" + hashlib.sha512(DATA).hexdigest()
    r = await client.post("/v2/team/app/blobs/uploads/", params={"digest": digest}, content=DATA)
    assert r.status_code == 201, r.text
    r = await client.get(f"/v2/team/app/blobs/{digest}")
    assert r.content == DATA
    assert r.headers["Docker-Content-Digest"] == digest


async def test_delete(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "team/app", DATA)
    await push_blob(client, "team/other", DATA)
    r = await client.delete(f"/v2/team/app/blobs/{digest}")
    assert r.status_code == 202
    assert_error(await client.get(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(await client.delete(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    # The content is shared: another repository that links it still serves it.
    assert (await client.get(f"/v2/team/other/blobs/{digest}")).content == DATA


async def test_empty_blob(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "team/app", b"")
    r = await client.get(f"/v2/team/app/blobs/{digest}")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "0"
    assert r.content == b""


async def test_accel_redirect_hands_the_file_to_nginx(
    make_settings: Callable[..., Settings],
) -> None:
    try:
        settings = make_settings(storage_accel_redirect="/_blobs/")
    except ConfigError as exc:
        # S3 blobs go out as presigned redirects instead.
        assert "filesystem store only" in str(exc)
        return
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        digest = await push_blob(c, "team/app", DATA)
        hex_ = digest.split(":")[1]
        r = await c.get(f"/v2/team/app/blobs/{digest}")
        assert r.status_code == 200
        assert r.headers["X-Accel-Redirect"] == f"/_blobs/sha256/{hex_[:2]}/{hex_}"
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.content == b""
        # That path under the storage root is the blob's file.
        assert (settings.storage_root / "blobs/sha256" / hex_[:2] / hex_).read_bytes() == DATA
        # Access is checked first: no link, no redirect.
        assert_error(await c.get(f"/v2/team/other/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        head = await c.head(f"/v2/team/app/blobs/{digest}")
        assert "X-Accel-Redirect" not in head.headers
    await app.state.registry.close()
