"""The distribution API of a remote registry, as replication reads and writes it: the
mirror's upstream client (tokens, backoff after a 429) with what a push needs.

Uploads go in chunks (PATCH with Content-Range) to the session URL the remote gives;
the remote's `Range` after each chunk is the offset to go on from, which is what lets a
copy interrupted anywhere resume instead of starting again (its session's URL is kept
in the database between attempts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin

import httpx

from registry.parse import json_document
from registry.proxy.upstream import Upstream, UpstreamError

_PAGE = 1000
_MAX_PAGES = 1000  # of a catalog or tag list: a million names
_LISTING_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Session:
    """An upload in progress at the remote: where to send the next chunk, and how many
    bytes it holds."""

    location: str
    offset: int


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    detail = ""
    try:
        errors = json_document(response.content).get("errors") or []
        if errors and isinstance(errors[0], dict):
            detail = f" ({errors[0].get('code')}: {str(errors[0].get('message'))[:200]})"
    except (ValueError, AttributeError, httpx.ResponseNotRead):
        pass
    raise UpstreamError(
        response.status_code,
        f"{what}: the remote answered {response.status_code}{detail}",
        response.headers.get("retry-after"),
    )


class RemoteRegistry(Upstream):
    """A remote as replication sees it: read and written by name."""

    async def catalog(self) -> list[str]:
        """Every repository the remote lists (GET /v2/_catalog, page after page)."""
        names: list[str] = []
        url: str | None = f"{self.url}/v2/_catalog?n={_PAGE}"
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            response = await self._send("GET", "", "", url=url)
            _raise_for(response, "list the repositories")
            names += _listed(response, "repositories")
            url = self._next(response)
        return names

    async def tags(self, name: str) -> list[str] | None:
        """The repository's tags, or None if the remote does not know it."""
        found: list[str] = []
        url: str | None = f"{self.url}/v2/{self.remote_name(name)}/tags/list?n={_PAGE}"
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            response = await self._send("GET", name, "", url=url)
            if response.status_code == 404:
                return None
            _raise_for(response, f"list the tags of {name}")
            found += _listed(response, "tags")
            url = self._next(response)
        return found

    @asynccontextmanager
    async def blob_from(self, name: str, digest: str, offset: int) -> AsyncIterator[httpx.Response]:
        """The blob's bytes from `offset` on (a Range request), streaming."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = await self._send("GET", name, f"blobs/{digest}", stream=True, headers=headers)
        try:
            _raise_for(response, f"GET blob {name}@{digest}")
            if offset and response.status_code != 206:
                raise UpstreamError(502, f"GET blob {name}@{digest}: the remote ignored Range")
            yield response
        finally:
            await response.aclose()

    async def has_blob(self, name: str, digest: str) -> bool:
        return await self.blob_size(name, digest) is not None

    async def put_manifest(
        self, name: str, reference: str, content: bytes, media_type: str
    ) -> httpx.Headers:
        response = await self._send(
            "PUT",
            name,
            f"manifests/{reference}",
            push=True,
            headers={"Content-Type": media_type},
            content=content,
        )
        _raise_for(response, f"PUT manifest {name}:{reference}")
        return response.headers

    async def delete_manifest(self, name: str, reference: str) -> int:
        """DELETE a tag or a manifest: the remote's status (202 deleted, 404 not there;
        400, 405 or UNSUPPORTED: it does not delete that way)."""
        response = await self._send("DELETE", name, f"manifests/{reference}", push=True)
        if response.status_code not in (202, 404, 400, 405):
            _raise_for(response, f"DELETE manifest {name}:{reference}")
        return response.status_code

    async def mount(self, name: str, digest: str, source: str) -> bool:
        """Ask the remote to link a blob it has in `source` to `name`: whether it did.
        An upload it opens instead is cancelled."""
        query = urlencode({"mount": digest, "from": self.remote_name(source)})
        response = await self._send("POST", name, f"blobs/uploads/?{query}", push=True)
        if response.status_code == 201:
            return True
        if response.status_code == 202 and "location" in response.headers:
            await self.cancel(name, self._absolute(response.headers["location"]))
        return False

    async def start_upload(self, name: str) -> Session:
        response = await self._send("POST", name, "blobs/uploads/", push=True)
        _raise_for(response, f"start an upload to {name}")
        return Session(self._location(response, name), 0)

    async def upload_status(self, name: str, location: str) -> Session | None:
        """Where an upload stands (GET on its location), or None if the remote has
        forgotten it (ended, expired, restarted without it)."""
        response = await self._send("GET", name, "", url=location)
        if response.status_code in (400, 404):
            return None
        _raise_for(response, f"read the upload of {name}")
        return Session(self._location(response, name, location), _offset(response))

    async def send_chunk(
        self, name: str, session: Session, chunks: AsyncIterator[bytes], length: int
    ) -> Session:
        """PATCH `length` bytes at the session's offset; the session as the remote
        then reports it."""
        end = session.offset + length - 1
        response = await self._send(
            "PATCH",
            name,
            "",
            push=True,
            url=session.location,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{session.offset}-{end}",
                "Content-Length": str(length),
            },
            content=chunks,
        )
        _raise_for(response, f"send bytes {session.offset}-{end} to {name}")
        return Session(self._location(response, name, session.location), _offset(response))

    async def finish_upload(self, name: str, session: Session, digest: str) -> None:
        joiner = "&" if "?" in session.location else "?"
        url = f"{session.location}{joiner}{urlencode({'digest': digest})}"
        response = await self._send(
            "PUT", name, "", push=True, url=url, headers={"Content-Length": "0"}, content=b""
        )
        _raise_for(response, f"end the upload of {digest} to {name}")

    async def cancel(self, name: str, location: str) -> None:
        try:
            response = await self._send("DELETE", name, "", push=True, url=location)
            await response.aclose()
        except UpstreamError:
            pass  # the remote expires what it is not told

    def _absolute(self, location: str) -> str:
        return urljoin(self.url + "/", location)

    def _location(self, response: httpx.Response, name: str, previous: str = "") -> str:
        location = response.headers.get("location") or previous
        if not location:
            raise UpstreamError(502, f"the remote gave no upload location for {name}")
        return self._absolute(location)

    def _next(self, response: httpx.Response) -> str | None:
        """The next page from a Link header (`<url>; rel="next"`)."""
        link = response.headers.get("link", "")
        if 'rel="next"' not in link or "<" not in link:
            return None
        return self._absolute(link[link.index("<") + 1 : link.index(">")])


def _offset(response: httpx.Response) -> int:
    """The bytes an upload holds, from its Range header (`0-1023`; none: 0). `0-0` is
    what registries say of an empty upload (and of one byte: the spec's form cannot
    tell them apart), so it reads as 0; a chunk sent at 0 then again is refused (416)."""
    _, _, end = response.headers.get("range", "").partition("-")
    end = end.strip()
    return int(end) + 1 if end.isdigit() and int(end) > 0 else 0


def _listed(response: httpx.Response, key: str) -> list[str]:
    if len(response.content) > _LISTING_BYTES:
        raise UpstreamError(502, f"the remote's {key} page is too large")
    body = json_document(response.content)
    values = body.get(key) if isinstance(body, dict) else None
    return [v for v in values or [] if isinstance(v, str)]
