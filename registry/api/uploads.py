"""/v2/<name>/blobs/uploads/: start (monolithic, mount), PATCH, PUT, status, cancel."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from registry.api import urls
from registry.api.access import caller_name, may
from registry.api.common import body_chunks, has_body, repository
from registry.api.ranges import parse_content_range
from registry.auth.scopes import PULL, repository_scope
from registry.digest import ALGORITHMS, DEFAULT_ALGORITHM, Digest
from registry.errors import BlobUploadUnknown, DigestInvalid, RangeInvalid
from registry.names import check_name
from registry.parse import content_length
from registry.requests import registry_of
from registry.services.uploads import Span

# The ids this registry makes are UUIDs; the pattern is wider, so that no session an
# older version made is turned away.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _upload_headers(name: str, upload_id: str, offset: int) -> dict[str, str]:
    return {
        "Location": urls.upload(name, upload_id),
        "Range": f"0-{max(offset - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def _created(name: str, digest: Digest) -> Response:
    return Response(
        status_code=201,
        headers={
            "Location": urls.blob(name, digest),
            "Docker-Content-Digest": str(digest),
            "Content-Length": "0",
        },
    )


async def start(request: Request) -> Response:
    name = repository(request)
    registry = registry_of(request)
    params = request.query_params
    mount = params.get("mount")
    if mount is not None:
        digest = Digest.parse(mount)
        source = params.get("from")
        # Without pull on the source, the mount quietly becomes a plain upload (as when
        # the blob is not there), so the answer does not reveal what the source holds.
        if (
            source
            and await may(request, repository_scope(check_name(source), PULL))
            and await registry.blobs.mount(name, digest, source)
        ):
            return _created(name, digest)
    if "digest" in params and mount is None:
        digest = Digest.parse(params["digest"])
        await registry.uploads.put_whole(name, digest, body_chunks(request))
        return _created(name, digest)
    algorithm = _digest_algorithm(params.get("digest-algorithm"))
    upload_id = await registry.uploads.start(name, caller_name(request), algorithm)
    return Response(status_code=202, headers=_upload_headers(name, upload_id, 0))


def _digest_algorithm(asked: str | None) -> str:
    """The algorithm a chunked upload is hashed in as it comes: sha256, or what the POST's
    `?digest-algorithm=` names (distribution-spec, for digests other than sha256)."""
    if asked is None:
        return DEFAULT_ALGORITHM
    if asked not in ALGORITHMS:
        raise DigestInvalid(
            {"digest-algorithm": asked[:50]},
            message=f"unsupported digest-algorithm {asked[:50]!r}: use "
            + " or ".join(sorted(ALGORITHMS)),
        )
    return asked


def _span(request: Request) -> Span | None:
    """Content-Range and Content-Length of a chunk, if the client sent a range."""
    found = parse_content_range(request.headers.get("content-range"))
    if found is None:
        return None
    return Span(*found, content_length(request.headers))


def _session(request: Request) -> tuple[str, str]:
    """The repository and upload id of the path; an id outside the pattern names no
    session, and never reaches a query (PostgreSQL refuses a NUL in text)."""
    upload_id = request.path_params["upload_id"]
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise BlobUploadUnknown({"uuid": upload_id[:100]})
    return repository(request), upload_id


async def status(request: Request) -> Response:
    """GET: where the session stands."""
    name, upload_id = _session(request)
    offset = await registry_of(request).uploads.offset(name, upload_id)
    headers = {**_upload_headers(name, upload_id, offset), "Content-Length": "0"}
    return Response(status_code=204, headers=headers)


async def append(request: Request) -> Response:
    """PATCH: a chunk, or the rest of the bytes streamed."""
    name, upload_id = _session(request)
    uploads = registry_of(request).uploads
    async with _positioned(request, name, upload_id):
        offset = await uploads.append(name, upload_id, body_chunks(request), _span(request))
    return Response(status_code=202, headers=_upload_headers(name, upload_id, offset))


async def finish(request: Request) -> Response:
    """PUT ?digest=: the last chunk, if any, and the blob checked and stored."""
    name, upload_id = _session(request)
    uploads = registry_of(request).uploads
    raw = request.query_params.get("digest")
    if raw is None:
        raise DigestInvalid(message="PUT completing an upload needs a ?digest= parameter")
    digest = Digest.parse(raw)
    async with _positioned(request, name, upload_id):
        if has_body(request):
            await uploads.finish(name, upload_id, digest, body_chunks(request), _span(request))
        else:
            await uploads.finish(name, upload_id, digest)
    return _created(name, digest)


async def cancel(request: Request) -> Response:
    """DELETE: the session ends, and its bytes go."""
    name, upload_id = _session(request)
    await registry_of(request).uploads.cancel(name, upload_id)
    return Response(status_code=204)


@contextlib.asynccontextmanager
async def _positioned(request: Request, name: str, upload_id: str) -> AsyncIterator[None]:
    """As the spec asks of an out-of-order chunk: 416 with where the session stands, read
    again, since a chunked body may have been stored in part (Retry-After stays: the
    session is busy with another writer)."""
    try:
        yield
    except RangeInvalid as exc:
        offset = await registry_of(request).uploads.offset(name, upload_id)
        exc.headers.update(_upload_headers(name, upload_id, offset))
        raise
