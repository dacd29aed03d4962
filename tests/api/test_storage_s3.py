"""The API on the S3 store: blob GETs redirected to S3, and S3 failing mid-upload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import Settings
from tests.conftest import s3_environment
from tests.helpers import assert_error, push_blob, push_image, session_offset, sha256
from tests.peers.s3 import MIN_PART, MotoServer

pytestmark = pytest.mark.anyio

DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def s3_settings(
    make_settings: Callable[..., Settings], s3_server: MotoServer
) -> Callable[..., Settings]:
    bucket = s3_server.new_bucket()

    def make(**env: str) -> Settings:
        overrides = {
            key.removeprefix("REGISTRY_").lower(): value
            for key, value in s3_environment(s3_server, bucket).items()
        }
        return make_settings(**{**overrides, **env})

    return make


@pytest.fixture
async def s3_client(s3_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(s3_settings(storage_s3_redirect="true"))
    async with _client(app) as client:
        yield client
    await app.state.registry.close()


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r.test")


@pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True)
async def test_blob_get_redirects_to_s3(s3_client: httpx.AsyncClient) -> None:
    digest = await push_blob(s3_client, "team/app", DATA)
    r = await s3_client.get(f"/v2/team/app/blobs/{digest}")
    assert r.status_code == 307
    location = r.headers["Location"]
    assert "X-Amz-Signature" in location or "Signature=" in location
    async with httpx.AsyncClient() as outside:
        whole = await outside.get(location)
        assert whole.status_code == 200
        assert sha256(whole.content) == digest
        part = await outside.get(location, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206
        assert part.content == DATA[10:20]
    # HEAD still comes from the index, with no redirect.
    head = await s3_client.head(f"/v2/team/app/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(DATA))
    # An unknown blob is unknown, not a redirect to nothing.
    assert_error(await s3_client.get(f"/v2/team/app/blobs/{sha256(b'no')}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True)
async def test_s3_down_mid_upload_then_the_retry_succeeds(
    s3_client: httpx.AsyncClient, s3_server: MotoServer
) -> None:
    data = b"".join(bytes([n]) * MIN_PART for n in range(3)) + b"end"
    r = await s3_client.post("/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]
    first = data[: MIN_PART + 100]
    r = await s3_client.patch(location, content=first)
    assert r.status_code == 202

    s3_server.relay.cut()
    try:
        r = await s3_client.patch(location, content=data[len(first) :])
        error = assert_error(r, 503, "UNAVAILABLE")
        assert "blob storage failed" in error["message"]
        r = await s3_client.put(location, params={"digest": sha256(data)})
        assert_error(r, 503, "UNAVAILABLE")
    finally:
        s3_server.relay.restore()

    # The session is intact: the client asks where it stands and carries on from there.
    status = await s3_client.get(location)
    assert status.status_code == 204
    offset = session_offset(status)
    assert offset == len(first)
    r = await s3_client.patch(
        location,
        content=data[offset:],
        headers={"Content-Range": f"{offset}-{len(data) - 1}"},
    )
    assert r.status_code == 202
    r = await s3_client.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    r = await s3_client.get(f"/v2/team/app/blobs/{sha256(data)}")
    async with httpx.AsyncClient() as outside:
        assert (await outside.get(r.headers["Location"])).content == data


@pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True)
async def test_s3_down_at_commit_shows_no_half_blob(
    s3_client: httpx.AsyncClient, s3_server: MotoServer
) -> None:
    data = b"x" * (MIN_PART * 2 + 5)
    r = await s3_client.post("/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]
    assert (await s3_client.patch(location, content=data)).status_code == 202
    s3_server.relay.cut()
    try:
        r = await s3_client.put(location, params={"digest": sha256(data)})
        assert_error(r, 503, "UNAVAILABLE")
    finally:
        s3_server.relay.restore()
    head = await s3_client.head(f"/v2/team/app/blobs/{sha256(data)}")
    assert head.status_code == 404
    r = await s3_client.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert (await s3_client.head(f"/v2/team/app/blobs/{sha256(data)}")).status_code == 200


@pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True)
async def test_manifest_get_and_blob_head_need_no_s3_call(
    s3_client: httpx.AsyncClient, s3_server: MotoServer
) -> None:
    digest, _ = await push_image(s3_client, "team/app", "v1")
    config = sha256(b'{"ref": "v1"}')
    s3_server.relay.cut()
    try:
        r = await s3_client.get(
            "/v2/team/app/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert r.status_code == 200
        assert sha256(r.content) == digest
        assert (await s3_client.head(f"/v2/team/app/blobs/{config}")).status_code == 200
        assert (await s3_client.get("/v2/team/app/tags/list")).json()["tags"] == ["v1"]
    finally:
        s3_server.relay.restore()


@pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True)
async def test_s3_that_hangs_gets_503_within_the_timeout_then_recovers(
    s3_settings: Callable[..., Settings], s3_server: MotoServer
) -> None:
    """S3 accepts connections and never answers: each call gives up after
    timeout_seconds x max_attempts, the client gets 503, and what needs no S3 call
    (manifest GET) is answered meanwhile."""
    app = create_app(s3_settings(storage_s3_timeout_seconds="1", storage_s3_max_attempts="2"))
    async with _client(app) as client:
        digest = await push_blob(client, "team/app", DATA)
        await push_image(client, "team/app", "v1")
        r = await client.post("/v2/team/app/blobs/uploads/")
        location = r.headers["Location"]
        s3_server.relay.stall()
        try:
            started = time.monotonic()
            get, patch, manifest = await asyncio.gather(
                client.get(f"/v2/team/app/blobs/{digest}"),
                client.patch(location, content=DATA),
                client.get("/v2/team/app/manifests/v1"),
            )
            elapsed = time.monotonic() - started
            assert "blob storage failed" in assert_error(get, 503, "UNAVAILABLE")["message"]
            assert_error(patch, 503, "UNAVAILABLE")
            assert manifest.status_code == 200
            assert elapsed < 8, f"S3 calls hung for {elapsed:.1f} s"
        finally:
            s3_server.relay.resume()
        r = await client.get(f"/v2/team/app/blobs/{digest}")
        assert r.status_code == 200 and r.content == DATA
        status = await client.get(location)
        offset = session_offset(status)
        r = await client.patch(
            location, content=DATA[offset:], headers={"Content-Range": f"{offset}-{len(DATA) - 1}"}
        )
        assert r.status_code == 202, r.text
        assert (await client.put(location, params={"digest": digest})).status_code == 201
    await app.state.registry.close()
