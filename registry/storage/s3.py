"""Blobs in S3-compatible object storage (AWS S3, MinIO, Ceph) through boto3.

Layout under the configured prefix:

    blobs/<algorithm>/<first two hex>/<hex>        committed content, immutable
    uploads/<upload id>/started                    marks a session that exists
    uploads/<upload id>/seg/<offset, 20 digits>    the session's bytes, in segments
    uploads/<upload id>/merge/<n>                  intermediate objects of a commit

An upload's bytes are plain objects, so they can be read back at any time (to hash them
again on another replica) and the session lives on in S3 whatever process wrote it.
Every segment but the last is `part_size` long: an append first folds a short last
segment into the new data (rewriting it under the same key), so small PATCH chunks are
gathered in the bucket, not in memory. Commit copies the segments into the blob's key
server-side (CopyObject, or UploadPartCopy parts of a multipart upload), merging them in
stages when there are more than S3's 10,000 parts. The blob appears only when that copy
completes. boto3 blocks, so every call runs on a bounded pool of worker threads.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import anyio
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from registry.config import S3Settings
from registry.digest import Digest
from registry.metrics import measured_store
from registry.storage.base import (
    BlobNotFound,
    BlobStore,
    OffsetMismatch,
    StorageError,
    UploadNotFound,
    blob_key,
    check_upload_id,
    digest_of_key,
)

# Reads stream in pieces of this size: each piece is one hop to a worker thread.
READ_CHUNK = 1024 * 1024
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Segment:
    offset: int
    size: int
    key: str


@measured_store("s3")
class S3Store(BlobStore):
    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.append_unit = settings.part_size
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        credentials = {}
        if settings.access_key:
            credentials = {
                "aws_access_key_id": settings.access_key,
                "aws_secret_access_key": settings.secret_key,
            }
        self.client = _session().client(
            "s3",
            region_name=settings.region,
            endpoint_url=settings.endpoint_url or None,
            config=Config(
                s3={"addressing_style": settings.addressing_style},
                max_pool_connections=settings.pool_size,
                retries={"mode": "standard", "max_attempts": settings.max_attempts},
                connect_timeout=settings.timeout_seconds,
                read_timeout=settings.timeout_seconds,
            ),
            **credentials,
        )
        self._threads = anyio.CapacityLimiter(settings.pool_size)

    # Plumbing

    async def _call(self, operation: str, **params: Any) -> Any:
        """One S3 call on a worker thread; errors become StorageError."""
        method = getattr(self.client, operation)
        return await self._run(lambda: method(Bucket=self.bucket, **params), operation)

    async def _run(self, function: Callable[[], T], what: str) -> T:
        try:
            return await anyio.to_thread.run_sync(function, limiter=self._threads)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                raise _Missing(code) from exc
            raise StorageError(f"S3 {what} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {what} failed: {exc}") from exc

    async def check(self) -> None:
        """Raise StorageError unless the bucket is there and these credentials reach it."""
        try:
            await self._call("head_bucket")
        except _Missing as exc:
            raise StorageError(f"bucket {self.bucket!r} does not exist") from exc

    def _blob(self, digest: Digest) -> str:
        return self.prefix + blob_key(digest)

    def _upload(self, upload_id: str) -> str:
        return f"{self.prefix}uploads/{check_upload_id(upload_id)}/"

    # Blobs

    async def stat(self, digest: Digest) -> int | None:
        try:
            head = await self._call("head_object", Key=self._blob(digest))
        except _Missing:
            return None
        return int(head["ContentLength"])

    async def read(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        params: dict[str, Any] = {"Key": self._blob(digest)}
        if length == 0:
            # Nothing to read, and no Range header can ask S3 for nothing.
            if await self.stat(digest) is None:
                raise BlobNotFound(str(digest))
            return
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            params["Range"] = f"bytes={offset}-{end}"
        try:
            body = (await self._call("get_object", **params))["Body"]
        except _Missing as exc:
            raise BlobNotFound(str(digest)) from exc
        async for piece in self._stream(body, "reading a blob"):
            yield piece

    async def _stream(self, body: Any, what: str) -> AsyncIterator[bytes]:
        try:
            while piece := await self._run(lambda: body.read(READ_CHUNK), what):
                yield piece
        finally:
            body.close()

    async def read_bytes(self, digest: Digest) -> bytes:
        return b"".join([piece async for piece in self.read(digest)])

    async def put_bytes(self, digest: Digest, data: bytes) -> None:
        await self._call("put_object", Key=self._blob(digest), Body=data)

    async def write_blob(
        self,
        digest: Digest,
        chunks: AsyncIterable[bytes],
        observe: Callable[[bytes], None],
        accept: Callable[[], Awaitable[bool]],
    ) -> int | None:
        """A multipart upload at the blob's own key, completed only if the bytes match;
        a blob smaller than one part is one PUT, once it is accepted. Parts start at
        `part_size` and double every eighth of `max_parts`, so the part limit is never
        reached for any object S3 can hold. The multipart upload begins with its first
        part, so the upload sweep never sees one without parts for long."""
        target = self._blob(digest)
        upload_id: str | None = None
        try:
            parts: list[dict[str, Any]] = []
            size = 0
            buffer = bytearray()
            async for chunk in chunks:
                observe(chunk)
                buffer += chunk
                while len(buffer) >= (wanted := self._part_size(len(parts) + 1)):
                    if upload_id is None:
                        created = await self._call("create_multipart_upload", Key=target)
                        upload_id = created["UploadId"]
                    await self._put_part(target, upload_id, parts, bytes(buffer[:wanted]))
                    del buffer[:wanted]
                    size += wanted
            if upload_id is None:
                if not await accept():
                    return None
                await self._call("put_object", Key=target, Body=bytes(buffer))
                return len(buffer)
            if buffer:
                await self._put_part(target, upload_id, parts, bytes(buffer))
                size += len(buffer)
            if not await accept():
                await self._call("abort_multipart_upload", Key=target, UploadId=upload_id)
                return None
            await self._call(
                "complete_multipart_upload",
                Key=target,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return size
        except BaseException:
            if upload_id is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                    await self._call("abort_multipart_upload", Key=target, UploadId=upload_id)
            raise

    def _part_size(self, number: int) -> int:
        if number > self.settings.max_parts:
            raise StorageError(f"a blob needs more than {self.settings.max_parts} parts")
        step = max(1, self.settings.max_parts // 8)
        return int(self.settings.part_size * 2 ** ((number - 1) // step))

    async def _put_part(
        self, target: str, upload_id: str, parts: list[dict[str, Any]], data: bytes
    ) -> None:
        number = len(parts) + 1
        result = await self._call(
            "upload_part", Key=target, UploadId=upload_id, PartNumber=number, Body=data
        )
        parts.append({"PartNumber": number, "ETag": result["ETag"]})

    async def walk(self) -> AsyncIterator[tuple[Digest, int]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}blobs/"
        )
        iterator = iter(pages)
        while True:
            # One page (up to 1,000 keys) per trip to a thread.
            page = await self._run(lambda: next(iterator, None), "listing blobs")
            if page is None:
                return
            for item in page.get("Contents", []):
                digest = digest_of_key(item["Key"][len(self.prefix) :])
                if digest is not None:
                    yield digest, int(item["Size"])

    async def delete(self, digests: Sequence[Digest]) -> None:
        await self._delete_keys([self._blob(d) for d in digests])

    def presigned_url(self, digest: Digest) -> str | None:
        if not self.settings.redirect:
            return None
        # Signing is local computation; no call to S3.
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._blob(digest)},
            ExpiresIn=self.settings.presign_expiry_seconds,
        )
        return url

    # Uploads

    async def upload_start(self, upload_id: str) -> None:
        await self._call("put_object", Key=self._upload(upload_id) + "started", Body=b"")

    async def _segments(self, upload_id: str) -> list[_Segment]:
        """The session's segments in order; UploadNotFound if there is no session."""
        prefix = self._upload(upload_id)
        keys = await self._list(prefix)
        if prefix + "started" not in keys:
            raise UploadNotFound(upload_id)
        segments = [
            _Segment(int(key.rsplit("/", 1)[1]), size, key)
            for key, size in keys.items()
            if key.startswith(prefix + "seg/")
        ]
        segments.sort(key=lambda s: s.offset)
        expected = 0
        for segment in segments:
            if segment.offset != expected:
                raise StorageError(f"upload {upload_id} is missing bytes at offset {expected}")
            expected += segment.size
        return segments

    async def _list(self, prefix: str) -> dict[str, int]:
        def list_all() -> dict[str, int]:
            found: dict[str, int] = {}
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found[item["Key"]] = int(item["Size"])
            return found

        return await self._run(list_all, "listing an upload")

    async def upload_size(self, upload_id: str) -> int:
        return sum(segment.size for segment in await self._segments(upload_id))

    async def upload_append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        observe: Callable[[bytes], None] | None = None,
    ) -> int:
        segments = await self._segments(upload_id)
        size = sum(segment.size for segment in segments)
        if size != offset:
            raise OffsetMismatch(size, offset)
        part = self.settings.part_size
        buffer = bytearray()
        start = offset
        if segments and segments[-1].size < part:
            # Fold the short last segment into this append: it is written again, longer,
            # under its own key.
            last = segments[-1]
            start = last.offset
            body = (await self._call("get_object", Key=last.key))["Body"]
            async for piece in self._stream(body, "reading an upload"):
                buffer += piece
        prefix = self._upload(upload_id)
        async for chunk in chunks:
            if observe is not None:
                observe(chunk)
            buffer += chunk
            while len(buffer) >= part:
                await self._put_segment(prefix, start, bytes(buffer[:part]))
                del buffer[:part]
                start += part
        if buffer:
            await self._put_segment(prefix, start, bytes(buffer))
            start += len(buffer)
        return start

    async def _put_segment(self, prefix: str, offset: int, data: bytes) -> None:
        await self._call("put_object", Key=f"{prefix}seg/{offset:020d}", Body=data)

    async def upload_read(
        self, upload_id: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        end = None if length is None else offset + length
        for segment in await self._segments(upload_id):
            last = segment.offset + segment.size
            if last <= offset or (end is not None and segment.offset >= end):
                continue
            start = max(offset - segment.offset, 0)
            stop = segment.size if end is None else min(end, last) - segment.offset
            # Always a Range: a short last segment may be rewritten longer meanwhile.
            params = {"Key": segment.key, "Range": f"bytes={start}-{stop - 1}"}
            try:
                body = (await self._call("get_object", **params))["Body"]
            except _Missing as exc:
                # Committed or cancelled while being read.
                raise UploadNotFound(upload_id) from exc
            async for piece in self._stream(body, "reading an upload"):
                yield piece

    async def upload_commit(self, upload_id: str, digest: Digest) -> None:
        segments = await self._segments(upload_id)
        target = self._blob(digest)
        if await self.stat(digest) is None:
            if not segments:
                await self._call("put_object", Key=target, Body=b"")
            else:
                sources = [(s.key, s.size) for s in segments]
                await self._compose(target, sources, self._upload(upload_id) + "merge/")
        await self.upload_cancel(upload_id)

    async def _compose(self, target: str, sources: list[tuple[str, int]], scratch: str) -> None:
        """Copy `sources`, in order, into one object at `target`, server-side."""
        if len(sources) == 1 and sources[0][1] <= self.settings.max_copy_bytes:
            await self._call(
                "copy_object", Key=target, CopySource={"Bucket": self.bucket, "Key": sources[0][0]}
            )
            return
        parts = [piece for key, size in sources for piece in self._ranges(key, size)]
        if len(parts) <= self.settings.max_parts:
            await self._multipart_copy(target, parts)
            return
        # Too many parts for one object: merge runs of sources into larger objects first.
        groups: list[list[tuple[str, int]]] = [[]]
        count = 0
        for key, size in sources:
            needed = len(self._ranges(key, size))
            if count + needed > self.settings.max_parts:
                groups.append([])
                count = 0
            groups[-1].append((key, size))
            count += needed
        merged = []
        for number, group in enumerate(groups):
            key = f"{scratch}{target.rsplit('/', 1)[1][:16]}-{len(sources)}-{number}"
            await self._compose(key, group, scratch)
            merged.append((key, sum(size for _, size in group)))
        await self._compose(target, merged, scratch)

    def _ranges(self, key: str, size: int) -> list[tuple[str, str | None]]:
        """Copy parts for one source: whole, or even ranges no larger than S3 copies."""
        limit = self.settings.max_copy_bytes
        if size <= limit:
            return [(key, None)]
        count = math.ceil(size / limit)
        step = math.ceil(size / count)
        return [
            (key, f"bytes={begin}-{min(begin + step, size) - 1}") for begin in range(0, size, step)
        ]

    async def _multipart_copy(self, target: str, parts: list[tuple[str, str | None]]) -> None:
        upload = await self._call("create_multipart_upload", Key=target)
        upload_id = upload["UploadId"]
        try:
            done = []
            for number, (key, span) in enumerate(parts, start=1):
                params: dict[str, Any] = {
                    "Key": target,
                    "UploadId": upload_id,
                    "PartNumber": number,
                    "CopySource": {"Bucket": self.bucket, "Key": key},
                }
                if span is not None:
                    params["CopySourceRange"] = span
                result = await self._call("upload_part_copy", **params)
                done.append({"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]})
            await self._call(
                "complete_multipart_upload",
                Key=target,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},
            )
        except BaseException:
            # The first error is the one to report. An unfinished multipart upload is
            # invisible, and `registry purge-uploads` (or a bucket lifecycle rule)
            # reclaims its space if this abort fails too.
            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                await self._call("abort_multipart_upload", Key=target, UploadId=upload_id)
            raise

    async def upload_cancel(self, upload_id: str) -> None:
        await self._delete_keys(list(await self._list(self._upload(upload_id))))

    async def _delete_keys(self, keys: list[str]) -> None:
        for begin in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[begin : begin + 1000]]
            result = await self._call("delete_objects", Delete={"Objects": batch, "Quiet": True})
            # S3 answers 200 and lists in Errors what it could not delete.
            failed = result.get("Errors") or []
            if failed:
                first = failed[0]
                raise StorageError(
                    f"S3 could not delete {len(failed)} of {len(batch)} objects, "
                    f"{first.get('Key')} first: {first.get('Code')} {first.get('Message')}"
                )

    async def sweep_uploads(self, before: datetime, keep: set[str]) -> None:
        def stale() -> tuple[list[str], list[tuple[str, str]]]:
            sessions: dict[str, tuple[datetime, list[str]]] = {}
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}uploads/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    session = item["Key"][len(self.prefix) :].split("/")[1]
                    newest, keys = sessions.get(session, (item["LastModified"], []))
                    keys.append(item["Key"])
                    sessions[session] = (max(newest, item["LastModified"]), keys)
            doomed = [
                key
                for session, (newest, keys) in sessions.items()
                if session not in keep and newest < before
                for key in keys
            ]
            multipart = []
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}blobs/"
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < before and self._idle_since(upload, before):
                        multipart.append((upload["Key"], upload["UploadId"]))
            return doomed, multipart

        doomed, multipart = await self._run(stale, "listing old uploads")
        await self._delete_keys(doomed)
        for key, upload_id in multipart:
            with contextlib.suppress(_Missing):
                await self._call("abort_multipart_upload", Key=key, UploadId=upload_id)

    def _idle_since(self, upload: dict[str, Any], before: datetime) -> bool:
        """Whether a multipart upload has had no part since `before`: one still writing
        is alive, whenever it began (and some S3 servers misreport `Initiated`)."""
        listed = self.client.list_parts(
            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
        return all(part["LastModified"] < before for part in listed.get("Parts", []))

    async def close(self) -> None:
        self.client.close()


@functools.cache
def _session() -> boto3.session.Session:
    # Shared, so that its parsed service models are loaded once per process.
    return boto3.session.Session()


class _Missing(StorageError):
    """S3 answered that the key or upload does not exist."""
