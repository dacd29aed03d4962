"""/v2/<name>/blobs/<digest>: GET (with Range), HEAD and DELETE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import BinaryIO

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from registry.api.common import digest_param, repository, source
from registry.api.ranges import parse_range
from registry.digest import Digest
from registry.requests import registry_of
from registry.sendfile import ZERO_COPY


async def delete_blob(request: Request) -> Response:
    name, digest = repository(request), digest_param(request)
    await registry_of(request).blobs.delete(name, digest)
    return Response(status_code=202, headers={"Content-Length": "0"})


async def get_blob(request: Request) -> Response:
    """GET (with Range) and HEAD: the size from the index here, or from the mirror."""
    name, digest = repository(request), digest_param(request)
    blobs = registry_of(request).blobs
    found = await source(request).blob(name, digest, head=request.method == "HEAD")
    if found.stream is not None:
        # A mirror's, not in its cache yet: the bytes as the upstream sends them, whole.
        headers = {**_headers(digest), "Content-Length": str(found.size)}
        return StreamingResponse(found.stream, headers=headers)
    size = found.size
    if request.method == "GET":
        url = blobs.redirect_url(digest)
        if url is not None:
            # The client fetches from storage directly; a Range header goes along with it.
            return RedirectResponse(url, status_code=307)
        internal = blobs.accel_path(digest)
        if internal is not None:
            # nginx sends the file itself (sendfile, Range included); no body here.
            return Response(headers={**_headers(digest), "X-Accel-Redirect": internal})
    headers = {**_headers(digest), "Accept-Ranges": "bytes"}
    span = parse_range(request.headers.get("range"), size)
    status = 200
    start, end = 0, size - 1
    if span is not None:
        start, end = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    if ZERO_COPY in request.scope.get("extensions", {}):
        file = await blobs.open_span(digest, start, end - start + 1)
        if file is not None:
            return _FileSpan(file, start, end - start + 1, status, headers)
    stream = blobs.stream(digest, start, end - start + 1)
    # The first read happens before the status line: a store that fails (S3 down, a file
    # gone) gets a 503 in the spec's format rather than a body cut off after a 200.
    first = await anext(stream, b"")
    return StreamingResponse(_after(first, stream), status_code=status, headers=headers)


class _FileSpan(Response):
    """A span of an open file, handed to the server to send with sendfile (the ASGI
    zerocopysend extension, registry/server.py); the file is opened before the status
    line, so a missing one still gets its 503."""

    def __init__(
        self, file: BinaryIO, offset: int, count: int, status: int, headers: dict[str, str]
    ) -> None:
        super().__init__(status_code=status, headers=headers)
        self.file, self.offset, self.count = file, offset, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            start = {"type": "http.response.start", "status": self.status_code}
            await send({**start, "headers": self.raw_headers})
            span = {"file": self.file, "offset": self.offset, "count": self.count}
            await send({"type": ZERO_COPY, **span, "more_body": False})
        finally:
            self.file.close()


async def _after(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for piece in rest:
        yield piece


def _headers(digest: Digest) -> dict[str, str]:
    return {
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Content-Type": "application/octet-stream",
        # Content-addressed: the bytes behind this URL never change.
        "Cache-Control": "max-age=31536000",
    }
