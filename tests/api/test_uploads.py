import hashlib
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import Settings
from registry.metadata.models import Upload
from tests.helpers import assert_error, push_blob, sha256

pytestmark = pytest.mark.anyio

DATA = b"0123456789" * 1000


async def start(client: httpx.AsyncClient, repo: str = "team/app") -> str:
    r = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202
    assert r.headers["Range"] == "0-0"
    assert r.headers["Location"] == f"/v2/{repo}/blobs/uploads/{r.headers['Docker-Upload-UUID']}"
    return r.headers["Location"]


async def saved_hash(app: Starlette, upload_id: str) -> tuple[str, int | None, bytes | None]:
    """The session row's algorithm, and the bytes its saved hash covers, and the hash."""
    async with app.state.registry.db.read() as conn:
        row = (
            await conn.execute(
                select(Upload.algorithm, Upload.hashed, Upload.hash_state).where(
                    Upload.id == upload_id
                )
            )
        ).one()
    return row[0], row[1], row[2]


async def test_monolithic_post(client: httpx.AsyncClient) -> None:
    digest = sha256(DATA)
    r = await client.post("/v2/team/app/blobs/uploads/", params={"digest": digest}, content=DATA)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/team/app/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest


async def test_post_then_put(client: httpx.AsyncClient) -> None:
    location = await start(client)
    digest = sha256(DATA)
    r = await client.put(location, params={"digest": digest}, content=DATA)
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == digest
    assert (await client.get(f"/v2/team/app/blobs/{digest}")).content == DATA


async def test_chunked_with_content_range(client: httpx.AsyncClient) -> None:
    location = await start(client)
    offset = 0
    for chunk in (DATA[:3000], DATA[3000:7000], DATA[7000:]):
        r = await client.patch(
            location,
            content=chunk,
            headers={
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert r.headers["Range"] == f"0-{offset - 1}"
        location = r.headers["Location"]
    status = await client.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == f"0-{len(DATA) - 1}"
    r = await client.put(location, params={"digest": sha256(DATA)})
    assert r.status_code == 201
    assert (await client.get(f"/v2/team/app/blobs/{sha256(DATA)}")).content == DATA


async def test_streamed_patch_and_last_chunk_in_put(client: httpx.AsyncClient) -> None:
    location = await start(client)
    r = await client.patch(location, content=DATA[:5000])
    assert r.status_code == 202
    r = await client.put(
        r.headers["Location"], params={"digest": sha256(DATA)}, content=DATA[5000:]
    )
    assert r.status_code == 201


async def test_out_of_order_chunk(client: httpx.AsyncClient) -> None:
    location = await start(client)
    await client.patch(location, content=DATA[:100], headers={"Content-Range": "0-99"})
    r = await client.patch(location, content=DATA[200:300], headers={"Content-Range": "200-299"})
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Range"] == "0-99"
    # Nothing was appended: the upload can go on from where it was.
    r = await client.patch(
        location, content=DATA[100:], headers={"Content-Range": f"100-{len(DATA) - 1}"}
    )
    assert r.status_code == 202
    assert (await client.put(location, params={"digest": sha256(DATA)})).status_code == 201


def assert_session_at(r: httpx.Response, location: str, offset: int) -> None:
    """A 416 that says where the session stands, as an out-of-order PATCH gets."""
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Range"] == f"0-{max(offset - 1, 0)}"
    assert r.headers["Location"] == location
    assert location.endswith(r.headers["Docker-Upload-UUID"])


@pytest.mark.parametrize(
    ("content_range", "body"),
    [
        ("200-299", DATA[200:300]),  # does not start at the session's offset
        ("50-149", DATA[50:150]),  # starts inside what is stored
        (f"100-{len(DATA)}", DATA[100:]),  # ends a byte past the body (Content-Length)
        ("100-199", DATA[100:]),  # the body is longer than the range
        ("bytes=100-", DATA[100:]),  # not a Content-Range
    ],
)
async def test_closing_put_that_disagrees_with_the_session_keeps_it(
    client: httpx.AsyncClient, content_range: str, body: bytes
) -> None:
    location = await start(client)
    await client.patch(location, content=DATA[:100], headers={"Content-Range": "0-99"})
    r = await client.put(
        location,
        params={"digest": sha256(DATA)},
        content=body,
        headers={"Content-Range": content_range},
    )
    assert_session_at(r, location, 100)
    assert (await client.get(location)).headers["Range"] == "0-99"
    assert (await client.head(f"/v2/team/app/blobs/{sha256(DATA)}")).status_code == 404
    # Nothing was appended and nothing thrown away: the right last chunk completes it.
    r = await client.put(
        location,
        params={"digest": sha256(DATA)},
        content=DATA[100:],
        headers={"Content-Range": f"100-{len(DATA) - 1}"},
    )
    assert r.status_code == 201, r.text
    assert (await client.get(f"/v2/team/app/blobs/{sha256(DATA)}")).content == DATA


async def test_closing_put_of_a_new_session_must_start_at_zero(
    client: httpx.AsyncClient,
) -> None:
    location = await start(client)
    r = await client.put(
        location, params={"digest": sha256(DATA)}, content=DATA, headers={"Content-Range": "1-"}
    )
    assert_session_at(r, location, 0)
    r = await client.put(
        location,
        params={"digest": sha256(DATA)},
        content=DATA,
        headers={"Content-Range": f"0-{len(DATA) - 1}"},
    )
    assert r.status_code == 201, r.text


async def test_patch_whose_length_disagrees_with_its_range(client: httpx.AsyncClient) -> None:
    location = await start(client)
    r = await client.patch(location, content=DATA[:100], headers={"Content-Range": "0-199"})
    assert_session_at(r, location, 0)
    assert (await client.get(location)).headers["Range"] == "0-0"


async def test_chunked_body_longer_than_its_range(client: httpx.AsyncClient) -> None:
    """Without a Content-Length the range is checked as the bytes arrive; the 416 says
    where the session stands after them."""

    async def body() -> AsyncIterator[bytes]:
        yield DATA[:100]

    location = await start(client)
    r = await client.patch(location, content=body(), headers={"Content-Range": "0-49"})
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Range"] == (await client.get(location)).headers["Range"]


async def test_malformed_content_range(client: httpx.AsyncClient) -> None:
    location = await start(client)
    r = await client.patch(location, content=b"abc", headers={"Content-Range": "zero-two"})
    assert_error(r, 416, "RANGE_INVALID")


async def test_wrong_digest_stores_nothing(client: httpx.AsyncClient) -> None:
    location = await start(client)
    wrong = sha256(b"something else")
    r = await client.put(location, params={"digest": wrong}, content=DATA)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(await client.get(f"/v2/team/app/blobs/{wrong}"), 404, "BLOB_UNKNOWN")
    assert_error(await client.get(f"/v2/team/app/blobs/{sha256(DATA)}"), 404, "BLOB_UNKNOWN")
    assert_error(await client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")


async def test_monolithic_wrong_digest(client: httpx.AsyncClient) -> None:
    wrong = sha256(b"other")
    r = await client.post("/v2/team/app/blobs/uploads/", params={"digest": wrong}, content=DATA)
    assert_error(r, 400, "DIGEST_INVALID")
    assert (await client.head(f"/v2/team/app/blobs/{wrong}")).status_code == 404


async def test_put_needs_a_digest(client: httpx.AsyncClient) -> None:
    location = await start(client)
    assert_error(await client.put(location, content=DATA), 400, "DIGEST_INVALID")
    location = await start(client)
    assert_error(
        await client.put(location, params={"digest": "sha256:nothex"}), 400, "DIGEST_INVALID"
    )


async def test_sha512_upload(client: httpx.AsyncClient) -> None:
    location = await start(client)
    await client.patch(location, content=DATA)
    digest = "sha512:" + hashlib.sha512(DATA).hexdigest()
    assert (await client.put(location, params={"digest": digest})).status_code == 201
    assert (await client.get(f"/v2/team/app/blobs/{digest}")).content == DATA


async def test_cancel(client: httpx.AsyncClient) -> None:
    location = await start(client)
    await client.patch(location, content=DATA)
    r = await client.delete(location)
    assert r.status_code == 204
    assert_error(await client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.patch(location, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize(
    "upload_id", ["not-a-uuid", "%2E%2E", "00000000-0000-0000-0000-000000000000"]
)
async def test_unknown_session(client: httpx.AsyncClient, upload_id: str) -> None:
    path = f"/v2/team/app/blobs/uploads/{upload_id}"
    assert_error(await client.get(path), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(await client.patch(path, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(
        await client.put(path, params={"digest": sha256(b"x")}, content=b"x"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )


async def test_session_belongs_to_its_repository(client: httpx.AsyncClient) -> None:
    location = await start(client, "team/app")
    other = location.replace("/team/app/", "/team/other/")
    assert_error(await client.patch(other, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")


async def test_mount(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "team/source", DATA)
    r = await client.post(
        "/v2/team/target/blobs/uploads/", params={"mount": digest, "from": "team/source"}
    )
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/team/target/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert (await client.get(f"/v2/team/target/blobs/{digest}")).content == DATA


async def test_mount_of_missing_blob_starts_a_session(client: httpx.AsyncClient) -> None:
    digest = sha256(b"not there")
    r = await client.post(
        "/v2/team/target/blobs/uploads/", params={"mount": digest, "from": "team/source"}
    )
    assert r.status_code == 202
    assert "Docker-Upload-UUID" in r.headers
    r = await client.put(r.headers["Location"], params={"digest": digest}, content=b"not there")
    assert r.status_code == 201


async def test_mount_with_invalid_digest(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v2/team/target/blobs/uploads/", params={"mount": "sha256:zz", "from": "team/source"}
    )
    assert_error(r, 400, "DIGEST_INVALID")


async def test_upload_survives_a_restart(settings: Settings) -> None:
    """A chunked upload started on one process continues on a fresh one (no hash cache)."""
    first: Starlette = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=first), base_url="http://r"
    ) as c:
        location = await start(c)
        await c.patch(location, content=DATA[:4000], headers={"Content-Range": "0-3999"})
    await first.state.registry.close()

    second: Starlette = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=second), base_url="http://r"
    ) as c:
        status = await c.get(location)
        assert status.headers["Range"] == "0-3999"
        r = await c.patch(
            location, content=DATA[4000:], headers={"Content-Range": f"4000-{len(DATA) - 1}"}
        )
        assert r.status_code == 202
        assert (await c.put(location, params={"digest": sha256(DATA)})).status_code == 201
        assert (await c.get(f"/v2/team/app/blobs/{sha256(DATA)}")).content == DATA
    await second.state.registry.close()


async def test_pushing_existing_blob_again(client: httpx.AsyncClient) -> None:
    await push_blob(client, "team/app", DATA)
    await push_blob(client, "team/app", DATA)
    assert (await client.head(f"/v2/team/app/blobs/{sha256(DATA)}")).status_code == 200


async def test_chunks_on_one_worker_are_hashed_as_they_arrive(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    """The PUT then needs no second reading of the stored bytes."""
    location = await start(client)
    upload_id = location.rsplit("/", 1)[1]
    uploads = app.state.registry.uploads
    for offset in range(0, len(DATA), 4000):
        piece = DATA[offset : offset + 4000]
        r = await client.patch(
            location,
            content=piece,
            headers={"Content-Range": f"{offset}-{offset + len(piece) - 1}"},
        )
        assert r.status_code == 202
        assert (await saved_hash(app, upload_id))[1] == offset + len(piece)

    async def no_rereading(*_: object) -> None:
        raise AssertionError("the stored upload was hashed again")

    uploads._hash_stored = no_rereading
    r = await client.put(location, params={"digest": sha256(DATA)})
    assert r.status_code == 201


async def test_open_sessions_are_bounded_per_caller(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(limits_upload_sessions="2"))

    def client_from(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 5000))
        return httpx.AsyncClient(transport=transport, base_url="http://r")

    async with client_from("10.0.0.1") as one, client_from("10.0.0.2") as two:
        # Monolithic uploads open no session at all.
        for n in range(3):
            await push_blob(one, "team/app", b"whole %d" % n)
        first, _ = await start(one), await start(one)
        r = await one.post("/v2/team/app/blobs/uploads/")
        error = assert_error(r, 429, "TOOMANYREQUESTS")
        assert "limits.upload_sessions" in error["message"]
        assert (await two.post("/v2/team/app/blobs/uploads/")).status_code == 202
        assert (await one.delete(first)).status_code == 204
        await start(one)
        await push_blob(one, "team/app", b"still fine")
    await app.state.registry.close()
