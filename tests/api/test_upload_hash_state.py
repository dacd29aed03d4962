"""A chunked upload's running hash, saved with the session: continued by another process
and after a restart, in sha256 and sha512; and chunks of one session one at a time."""

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from starlette.applications import Starlette

from registry import hashstate
from registry.errors import BlobUploadInvalid
from registry.hashstate import Hashes, resumable
from registry.metadata.models import Upload
from registry.services import uploads as uploads_module
from tests.api.test_uploads import saved_hash
from tests.helpers import assert_error
from tests.peers.registry import RegistryProcess

pytestmark = pytest.mark.anyio

PIECE = 256 * 1024 + 7  # not a multiple of either hash's block


def digest_of(data: bytes, algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def restored_hex(algorithm: str, state: bytes | None) -> str:
    assert state is not None
    hasher = resumable.restore(algorithm, state)
    assert hasher is not None
    return hasher.hexdigest()


@pytest.fixture
def two_processes(
    tmp_path: Path, database_url: str, storage_env: dict[str, str]
) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    """Two `registry serve` processes on one database and one blob store, like replicas."""
    env = {"REGISTRY_DATABASE_URL": database_url, **storage_env}
    first = RegistryProcess(tmp_path / "data", env).start()
    second = RegistryProcess(tmp_path / "data", env).start()
    yield first, second
    first.stop()
    second.stop()


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
async def test_chunks_alternating_between_processes_and_a_restart_continue_the_hash(
    two_processes: tuple[RegistryProcess, RegistryProcess], app: Starlette, algorithm: str
) -> None:
    first, second = two_processes
    data = os.urandom(PIECE * 5)
    query = "" if algorithm == "sha256" else f"?digest-algorithm={algorithm}"
    http = httpx.AsyncClient(timeout=30, follow_redirects=True)
    r = await http.post(f"{first.url}/v2/team/app/blobs/uploads/{query}")
    assert r.status_code == 202
    location = r.headers["Location"]
    upload_id = r.headers["Docker-Upload-UUID"]
    # first, second, first, then second after a restart, then first again.
    order = [first, second, first, second, first]
    for number, server in enumerate(order):
        if number == 3:
            await asyncio.to_thread(second.restart)
        offset = number * PIECE
        piece = data[offset : offset + PIECE]
        r = await http.patch(
            server.url + location,
            content=piece,
            headers={"Content-Range": f"{offset}-{offset + PIECE - 1}"},
        )
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{offset + PIECE - 1}"
        # The saved state is the hash of exactly what is stored, whichever process
        # wrote it: each continued the one before's.
        saved_algorithm, hashed, state = await saved_hash(app, upload_id)
        assert (saved_algorithm, hashed) == (algorithm, offset + PIECE)
        assert restored_hex(algorithm, state) == hashlib.new(algorithm, data[:hashed]).hexdigest()
    digest = digest_of(data, algorithm)
    r = await http.put(f"{second.url}{location}", params={"digest": digest})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    pulled = await http.get(f"{first.url}/v2/team/app/blobs/{digest}")
    await http.aclose()
    assert pulled.status_code == 200
    assert pulled.content == data


async def test_the_closing_put_uses_the_saved_hash_and_reads_nothing_again(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    """Each chunk in a new app, as if on another worker: the PUT finishes the saved hash."""
    data = os.urandom(PIECE * 3)
    r = await client.post("/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]
    for offset in range(0, len(data), PIECE):
        r = await client.patch(location, content=data[offset : offset + PIECE])
        assert r.status_code == 202
    uploads = app.state.registry.uploads

    async def no_rereading(*_: object) -> None:
        raise AssertionError("the stored upload was hashed again")

    uploads._hash_stored = no_rereading
    r = await client.put(location, params={"digest": digest_of(data, "sha256")})
    assert r.status_code == 201


async def test_a_put_in_another_algorithm_hashes_the_stored_bytes_again(
    client: httpx.AsyncClient,
) -> None:
    data = os.urandom(PIECE)
    r = await client.post("/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]
    assert (await client.patch(location, content=data)).status_code == 202
    r = await client.put(location, params={"digest": digest_of(data, "sha512")})
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == digest_of(data, "sha512")


async def test_an_unknown_digest_algorithm_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post("/v2/team/app/blobs/uploads/", params={"digest-algorithm": "md5"})
    error = assert_error(r, 400, "DIGEST_INVALID")
    assert "sha256 or sha512" in error["message"]


async def test_without_a_resumable_hash_the_put_hashes_the_stored_bytes(
    monkeypatch: pytest.MonkeyPatch, app: Starlette, client: httpx.AsyncClient
) -> None:
    monkeypatch.setattr(uploads_module, "resumable", Hashes({}))
    data = os.urandom(PIECE * 2)
    r = await client.post("/v2/team/app/blobs/uploads/")
    location, upload_id = r.headers["Location"], r.headers["Docker-Upload-UUID"]
    for offset in range(0, len(data), PIECE):
        r = await client.patch(location, content=data[offset : offset + PIECE])
        assert r.status_code == 202
    assert (await saved_hash(app, upload_id))[1:] == (None, None)
    r = await client.put(location, params={"digest": digest_of(data, "sha256")})
    assert r.status_code == 201
    wrong = await client.post("/v2/team/app/blobs/uploads/")
    assert (await client.patch(wrong.headers["Location"], content=data)).status_code == 202
    r = await client.put(wrong.headers["Location"], params={"digest": digest_of(b"x", "sha256")})
    assert_error(r, 400, "DIGEST_INVALID")


async def test_a_state_saved_by_another_build_is_not_taken_up(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    data = os.urandom(PIECE * 2)
    r = await client.post("/v2/team/app/blobs/uploads/")
    location, upload_id = r.headers["Location"], r.headers["Docker-Upload-UUID"]
    assert (await client.patch(location, content=data[:PIECE])).status_code == 202
    state = (await saved_hash(app, upload_id))[2]
    assert state is not None
    # Another layout or byte order: restore refuses it, and the bytes are hashed again.
    foreign = b"ossl1B" + state[6:]
    async with app.state.registry.db.write() as conn:
        await conn.execute(update(Upload).where(Upload.id == upload_id).values(hash_state=foreign))
    assert (await client.patch(location, content=data[PIECE:])).status_code == 202
    assert (await saved_hash(app, upload_id))[1:] == (None, None)
    r = await client.put(location, params={"digest": digest_of(data, "sha256")})
    assert r.status_code == 201


class Gate:
    """A request body that sends its first part, then waits to be let go."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first, self.rest = first, rest
        self.sent = asyncio.Event()
        self.go = asyncio.Event()

    async def body(self) -> AsyncIterator[bytes]:
        yield self.first
        self.sent.set()
        await self.go.wait()
        yield self.rest


async def test_a_second_writer_is_refused_while_a_chunk_is_being_written(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    """The worst interleaving: two chunks at the same offset, and the closing PUT, while a
    chunk streams. Were both written, the bytes stored could be the other's than those
    hashed, and a PUT could commit bytes under a digest they do not have."""
    good, evil = os.urandom(PIECE), os.urandom(PIECE)
    r = await client.post("/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]
    gate = Gate(good[:1000], good[1000:])
    streaming = asyncio.create_task(client.patch(location, content=gate.body()))
    await gate.sent.wait()
    second = await client.patch(location, content=evil)
    error = assert_error(second, 416, "RANGE_INVALID")
    assert "another request is writing" in error["message"]
    assert second.headers["Location"] == location
    put = await client.put(location, params={"digest": digest_of(good, "sha256")})
    assert_error(put, 416, "RANGE_INVALID")
    gate.go.set()
    first = await streaming
    assert first.status_code == 202
    assert first.headers["Range"] == f"0-{PIECE - 1}"
    r = await client.put(location, params={"digest": digest_of(good, "sha256")})
    assert r.status_code == 201
    blob = await client.get(f"/v2/team/app/blobs/{digest_of(good, 'sha256')}")
    assert blob.content == good


async def test_a_live_writer_keeps_its_claim_and_a_silent_one_loses_it(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    """A writer whose chunk is slow keeps the session while its process beats; once the
    process falls silent (hung, or a replica gone with its host) the claim goes to the
    next writer after stale_claim_seconds, and the old writer, waking, stops."""
    uploads = app.state.registry.uploads
    uploads.heartbeat_seconds, uploads.stale_claim_seconds = 0.05, 0.5
    data = os.urandom(PIECE)
    r = await client.post("/v2/team/app/blobs/uploads/")
    location, upload_id = r.headers["Location"], r.headers["Docker-Upload-UUID"]
    gate = Gate(data[:1000], data[1000:])
    stalled = asyncio.create_task(uploads.append("team/app", upload_id, gate.body()))
    await gate.sent.wait()
    await asyncio.sleep(1.0)  # twice the claim's life: the beats kept it
    refused = await client.patch(location, content=data)
    assert_error(refused, 416, "RANGE_INVALID")
    assert refused.headers["Retry-After"] == "1"
    # The process falls silent.
    uploads._heartbeat.cancel()
    await asyncio.sleep(0.6)
    taken = await client.put(location, params={"digest": digest_of(b"other", "sha256")})
    # Taken over: the PUT ran, found other bytes, and ended the session.
    assert_error(taken, 400, "DIGEST_INVALID")
    # It wakes: its next beat finds the claim gone, and the writer stops.
    uploads._heartbeat = asyncio.create_task(uploads._beat())
    await asyncio.sleep(0.2)
    gate.go.set()
    with pytest.raises(BlobUploadInvalid, match="taken over"):
        await stalled


def test_saved_and_restored_hashes_agree_with_hashlib() -> None:
    data = os.urandom(10_000)
    for algorithm in ("sha256", "sha512"):
        for cut in (0, 1, 63, 64, 65, 127, 128, 129, 4_999, 10_000):
            first = resumable.new(algorithm)
            assert first is not None
            first.update(data[:cut])
            again = resumable.restore(algorithm, first.state())
            assert again is not None
            again.update(data[cut:])
            assert again.hexdigest() == hashlib.new(algorithm, data).hexdigest()
            # hexdigest leaves the hash going.
            first.update(data[cut:])
            assert first.hexdigest() == again.hexdigest()


def test_states_that_are_not_this_builds_are_refused() -> None:
    state = resumable.new("sha256")
    assert state is not None
    saved = state.state()
    assert resumable.restore("sha256", saved[:-1]) is None
    assert resumable.restore("sha256", b"other" + saved[5:]) is None
    assert resumable.restore("sha512", saved) is None
    assert resumable.restore("md5", saved) is None
    assert hashstate.Hashes({}).new("sha256") is None
