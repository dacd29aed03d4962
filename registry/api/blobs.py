"""/v2/<name>/blobs/<digest>: HEAD, GET (with Range) and DELETE."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from registry.api.common import API_VERSION_HEADER, digest_param, registry_of, repository
from registry.api.ranges import parse_range


async def blob(request: Request) -> Response:
    name, digest = repository(request), digest_param(request)
    blobs = registry_of(request).blobs
    if request.method == "DELETE":
        await blobs.delete(name, digest)
        return Response(status_code=202, headers={**API_VERSION_HEADER, "Content-Length": "0"})

    size = await blobs.size(name, digest)
    if request.method == "GET":
        url = blobs.redirect_url(digest)
        if url is not None:
            # The client fetches from storage directly; a Range header goes along with it.
            return RedirectResponse(url, status_code=307, headers=API_VERSION_HEADER)
    headers = {
        **API_VERSION_HEADER,
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        # Content-addressed: the bytes behind this URL never change.
        "Cache-Control": "max-age=31536000",
    }
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
    return StreamingResponse(
        blobs.stream(digest, start, end - start + 1), status_code=status, headers=headers
    )
