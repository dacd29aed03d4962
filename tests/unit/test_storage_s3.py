"""The S3 store passes the storage contract against a real S3 endpoint (moto's server),
and its own paths: gathered small chunks, copy in ranges, merging past the part limit."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from registry.config import load_settings
from registry.digest import Digest
from registry.storage import BlobStore
from registry.storage.base import StorageError
from registry.storage.s3 import S3Store
from tests.conftest import s3_environment
from tests.peers.s3 import MIN_PART, MotoServer
from tests.storage_contract import StoreContract, accept, chunks, collect


def make_store(server: MotoServer, **overrides: object) -> S3Store:
    settings = load_settings(None, s3_environment(server, server.new_bucket()))
    s3 = dataclasses.replace(settings.storage.s3, **overrides)  # type: ignore[arg-type]
    return S3Store(s3)


class TestS3Store(StoreContract):
    @pytest.fixture
    def store(self, s3_server: MotoServer) -> BlobStore:
        self.server = s3_server
        return make_store(s3_server)

    def leftovers(self, store: BlobStore) -> list[str]:
        assert isinstance(store, S3Store)
        return self.server.keys(store.bucket, "uploads/") + self.server.multipart_uploads(
            store.bucket
        )


pytestmark = pytest.mark.anyio


async def _upload(store: S3Store, pieces: list[bytes]) -> tuple[str, bytes]:
    upload = str(uuid.uuid4())
    await store.upload_start(upload)
    offset = 0
    for piece in pieces:
        offset = await store.upload_append(upload, offset, chunks(piece))
    return upload, b"".join(pieces)


async def test_small_chunks_are_gathered_into_full_segments(s3_server: MotoServer) -> None:
    store = make_store(s3_server)
    pieces = [bytes([n]) * (MIN_PART // 3) for n in range(10)]
    upload, data = await _upload(store, pieces)
    segments = [k for k in s3_server.keys(store.bucket, "uploads/") if "/seg/" in k]
    sizes = [
        s3_server.client.head_object(Bucket=store.bucket, Key=k)["ContentLength"] for k in segments
    ]
    # Every segment but the last is a full part, as S3's multipart copy needs.
    assert sizes[:-1] == [MIN_PART] * (len(sizes) - 1)
    assert sum(sizes) == len(data)
    assert await collect(store.upload_read(upload)) == data
    digest = Digest.of(data)
    await store.upload_commit(upload, digest)
    assert await store.read_bytes(digest) == data
    assert s3_server.keys(store.bucket, "uploads/") == []


async def test_large_segments_are_copied_in_ranges(s3_server: MotoServer) -> None:
    # A copy limit of 2 parts stands in for S3's 5 GiB: the one big segment is copied in
    # ranges, through a multipart upload.
    store = make_store(s3_server, part_size=MIN_PART * 5, max_copy_bytes=MIN_PART * 2)
    upload, data = await _upload(store, [b"abcdefgh" * (MIN_PART // 2)])
    digest = Digest.of(data)
    await store.upload_commit(upload, digest)
    assert await store.read_bytes(digest) == data
    assert s3_server.multipart_uploads(store.bucket) == []


async def test_more_segments_than_parts_are_merged_in_stages(s3_server: MotoServer) -> None:
    # A limit of 3 parts stands in for S3's 10,000: 10 segments need merging twice.
    store = make_store(s3_server, max_parts=3)
    pieces = [bytes([n]) * MIN_PART for n in range(9)] + [b"tail"]
    upload, data = await _upload(store, pieces)
    digest = Digest.of(data)
    await store.upload_commit(upload, digest)
    assert await store.read_bytes(digest) == data
    assert s3_server.keys(store.bucket, "uploads/") == []
    assert s3_server.multipart_uploads(store.bucket) == []


async def test_a_ranged_read(s3_server: MotoServer) -> None:
    store = make_store(s3_server)
    digest = Digest.of(b"0123456789")
    await store.put_bytes(digest, b"0123456789")
    assert await collect(store.read(digest, 3, 4)) == b"3456"
    assert await collect(store.read(digest, 8)) == b"89"


async def test_presigned_url_only_with_redirect_on(s3_server: MotoServer) -> None:
    digest = Digest.of(b"x")
    url = make_store(s3_server, redirect=True).presigned_url(digest)
    assert url is not None and digest.hex in url and "Signature" in url
    assert make_store(s3_server, redirect=False).presigned_url(digest) is None


async def test_unreachable_s3_is_a_storage_error(s3_server: MotoServer) -> None:
    store = make_store(s3_server)
    s3_server.relay.cut()
    try:
        with pytest.raises(StorageError) as failed:
            await store.stat(Digest.of(b"x"))
        assert "S3 head_object failed" in str(failed.value)
    finally:
        s3_server.relay.restore()


async def test_known_digest_parts_grow_to_stay_within_the_part_limit(
    s3_server: MotoServer,
) -> None:
    # A limit of 4 parts: they grow 256 KiB, 512 KiB, 1 MiB, then the rest (up to 2 MiB).
    store = make_store(s3_server, max_parts=4)
    data = bytes(range(256)) * (3 * 1024 * 4)  # 3 MiB
    digest = Digest.of(data)
    assert await store.write_blob(
        digest, chunks(data), lambda _: None, accept(lambda: True)
    ) == len(data)
    assert await store.read_bytes(digest) == data
    too_big = b"y" * (4 * 1024 * 1024)
    with pytest.raises(StorageError) as failed:
        await store.write_blob(
            Digest.of(too_big), chunks(too_big), lambda _: None, accept(lambda: True)
        )
    assert "more than 4 parts" in str(failed.value)
    assert s3_server.multipart_uploads(store.bucket) == []
    assert await store.stat(Digest.of(too_big)) is None
