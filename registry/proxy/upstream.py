"""A client for an upstream registry: manifests and blobs over the distribution API, with
the Docker token dance (anonymous or with credentials) and tokens reused until they
expire. The pull-through mirror builds on it.

Failures reach callers as UpstreamError with the HTTP status (0 when the upstream could
not be reached), so the mirror can tell "not there" (404) from "down" or "limited" (429).
"""

from __future__ import annotations

import base64
import fnmatch
import ipaddress
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from registry.config import UpstreamSettings
from registry.digest import Digest
from registry.mediatypes import MANIFEST_TYPES
from registry.names import NAME_COMPONENT
from registry.parse import content_length, json_document
from registry.signatures import TrustedKey

# The names Docker Hub goes by: clients send any of them as its `ns`.
DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
# Asked of every upstream: all the manifest kinds we serve, indexes first.
ACCEPT = ", ".join(sorted(MANIFEST_TYPES, reverse=True))
# A token without expires_in lives 60 s (the token spec's default); renew a little early.
_DEFAULT_TOKEN_SECONDS = 60
_RENEW_EARLY_SECONDS = 10
_MAX_TOKENS = 1_000
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
# After a 429 without a usable Retry-After, the upstream is left alone this long; and
# never longer than the cap, whatever it asks.
BACKOFF_SECONDS = 60
MAX_BACKOFF_SECONDS = 6 * 3600


def hosts_of(upstreams: Sequence[UpstreamSettings]) -> dict[str, str]:
    """Each upstream's host (with its port, if any) and aliases, to its prefix here."""
    found: dict[str, str] = {}
    for upstream in upstreams:
        host = (urlsplit(upstream.url).netloc.rpartition("@")[2]).lower()
        for name in DOCKER_HUB_HOSTS if host in DOCKER_HUB_HOSTS else (host,):
            found.setdefault(name, upstream.prefix)
    return found


def allowed_host(host: str, patterns: Sequence[str]) -> bool:
    """Whether a host a client named (no port) matches `mirror.allow_hosts`. Never an IP
    address, nor a name without a dot: an operator lists such upstreams themselves."""
    host = host.lower()
    if not patterns or "." not in host or not NAME_COMPONENT.fullmatch(host):
        return False
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        pass
    return any(fnmatch.fnmatchcase(host, pattern) for pattern in patterns)


class UpstreamError(Exception):
    """The upstream failed or refused; `status` is its HTTP status, 0 if unreachable."""

    def __init__(
        self, status: int, message: str, retry_after: str | None = None, unsent: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        # Not sent at all: the upstream is being left alone after a 429.
        self.unsent = unsent


@dataclass(frozen=True, slots=True)
class RateLimit:
    """What the upstream's RateLimit-Limit and RateLimit-Remaining said last (Docker Hub:
    pulls per window, `100;w=21600`), and when."""

    limit: int | None
    remaining: int
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class RemoteManifest:
    digest: str
    media_type: str
    content: bytes


class Upstream:
    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.client = client
        self.credentials = (username, password or "") if username else None
        self.docker_hub = (urlsplit(self.url).hostname or "") in DOCKER_HUB_HOSTS
        # Tokens by scope, with the monotonic time they stop being used.
        self._tokens: dict[str, tuple[str, float]] = {}
        # Set when the upstream asks for HTTP Basic instead of tokens.
        self._basic: str | None = None
        self.rate_limit: RateLimit | None = None
        # Until when (epoch seconds) nothing is sent, after a 429: the mirror serves what
        # it has cached meanwhile, and refuses the rest with the time left.
        self.backoff_until = 0.0
        # Called when either of those changes (proxy/counters.py writes them down).
        self.changed: Callable[[], None] = lambda: None
        # The keys one of which must have signed what is served from it
        # (mirror.upstreams[].signed_by); empty: anything.
        self.signed_by: list[TrustedKey] = []

    def remote_name(self, name: str) -> str:
        """Docker Hub keeps official images under `library/`: `busybox` is
        `library/busybox` there."""
        return f"library/{name}" if self.docker_hub and "/" not in name else name

    async def manifest_digest(self, name: str, reference: str) -> str | None:
        """The digest a tag (or digest) points at now, by HEAD: cheap, and Docker Hub does
        not count it against pull limits. None if the upstream does not have it."""
        response = await self._send("HEAD", name, f"manifests/{reference}")
        if response.status_code == 404:
            return None
        _raise_for(response, f"HEAD manifest {name}:{reference}")
        digest: str | None = response.headers.get("docker-content-digest")
        if digest is None:
            # Some registries answer HEAD without it; a GET tells.
            manifest = await self.manifest(name, reference)
            return manifest.digest if manifest else None
        return digest

    async def manifest(
        self, name: str, reference: str, limit: int = 4 * 1024 * 1024
    ) -> RemoteManifest | None:
        """The manifest, verified against its digest (the one asked for, or the one the
        upstream names). None if the upstream does not have it."""
        response = await self._send("GET", name, f"manifests/{reference}", stream=True)
        try:
            if response.status_code == 404:
                return None
            _raise_for(response, f"GET manifest {name}:{reference}")
            body = bytearray()
            async for piece in response.aiter_bytes():
                body += piece
                if len(body) > limit:
                    raise UpstreamError(502, f"upstream manifest {name}:{reference} is too large")
        finally:
            await response.aclose()
        content = bytes(body)
        named = reference if reference.startswith("sha") and ":" in reference else None
        named = named or response.headers.get("docker-content-digest")
        actual = Digest.of(content, Digest.parse(named).algorithm if named else "sha256")
        if named is not None and str(actual) != named:
            raise UpstreamError(
                502, f"upstream manifest {name}:{reference} does not match digest {named}"
            )
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return RemoteManifest(str(actual), media_type, content)

    async def referrers(self, name: str, digest: str) -> list[dict[str, Any]] | None:
        """What refers to a manifest, by the referrers API; None where the remote has no
        such API (then its referrers are found by the tag schema's `sha256-<hex>`)."""
        response = await self._send("GET", name, f"referrers/{digest}")
        if response.status_code in (404, 405) and "json" not in response.headers.get(
            "content-type", ""
        ):
            return None
        if response.status_code == 404:
            return None
        _raise_for(response, f"list the referrers of {name}@{digest}")
        body = json_document(response.content)
        manifests = body.get("manifests") if isinstance(body, dict) else None
        return [m for m in manifests or [] if isinstance(m, dict)]

    async def blob_size(self, name: str, digest: str) -> int | None:
        """The blob's size by HEAD, or None if the upstream does not have it."""
        response = await self._send("HEAD", name, f"blobs/{digest}")
        if response.status_code == 404:
            return None
        _raise_for(response, f"HEAD blob {name}@{digest}")
        size = content_length(response.headers)
        if size is None:
            raise UpstreamError(502, f"HEAD blob {name}@{digest}: upstream sent no valid size")
        return size

    @asynccontextmanager
    async def blob(self, name: str, digest: str) -> AsyncIterator[httpx.Response]:
        """An open, streaming response for the blob (redirects followed)."""
        response = await self._send("GET", name, f"blobs/{digest}", stream=True)
        try:
            _raise_for(response, f"GET blob {name}@{digest}")
            yield response
        finally:
            await response.aclose()

    async def ping(self) -> None:
        """GET /v2/: a registry answers there, and lets these credentials (or anyone, if
        none) in; UpstreamError says otherwise, with the status (0: unreachable)."""
        for attempt in range(2):
            authorization = self._authorization("")
            headers = {"Authorization": authorization} if authorization else {}
            try:
                response = await self.client.get(f"{self.url}/v2/", headers=headers)
            except httpx.HTTPError as exc:
                raise UpstreamError(0, f"{self.url} cannot be reached: {exc}") from exc
            if response.status_code == 200:
                return
            if response.status_code != 401 or attempt:
                raise UpstreamError(
                    response.status_code,
                    f"{self.url} answered {response.status_code} to GET /v2/",
                )
            await self._authenticate(response.headers.get("www-authenticate", ""), "")
        raise AssertionError("unreachable")

    async def _send(
        self,
        method: str,
        name: str,
        path: str,
        stream: bool = False,
        *,
        push: bool = False,
        url: str | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
    ) -> httpx.Response:
        """A request about repository `name` (at `path` under it, or at `url`, an upload's
        location), with the token its scope needs (`push`: to write too). A body that
        streams is sent once: a 401 for it is answered by the caller's next attempt."""
        remote = self.remote_name(name)
        url = url or f"{self.url}/v2/{remote}/{path}"
        actions = "pull,push" if push else "pull"
        scope = f"repository:{remote}:{actions}" if name else "registry:catalog:*"
        headers = {"Accept": ACCEPT, **(headers or {})}
        wait = self.backoff_until - time.time()
        if wait > 0:
            seconds = math.ceil(wait)
            raise UpstreamError(
                429,
                f"upstream {self.url} rate-limited this mirror; it is asked again in {seconds} s",
                str(seconds),
                unsent=True,
            )
        for attempt in range(2):
            authorization = self._authorization(scope)
            if authorization:
                headers["Authorization"] = authorization
            try:
                request = self.client.build_request(method, url, headers=headers, content=content)
                response = await self.client.send(request, stream=stream, follow_redirects=True)
            except httpx.HTTPError as exc:
                raise UpstreamError(0, f"upstream {self.url} unreachable: {exc}") from exc
            self._observe(response)
            if response.status_code != 401 or attempt:
                return response
            challenge = response.headers.get("www-authenticate", "")
            await response.aclose()
            await self._authenticate(challenge, scope)
            if content is not None and not isinstance(content, bytes):
                return response  # its body is spent: the caller sends it again
        raise AssertionError("unreachable")

    def _observe(self, response: httpx.Response) -> None:
        """Note the rate limit the upstream announces, and back off after a 429."""
        remaining = _count(response.headers.get("ratelimit-remaining"))
        if remaining is not None:
            limit = _count(response.headers.get("ratelimit-limit"))
            self.rate_limit = RateLimit(limit, remaining, datetime.now(UTC))
            self.changed()
        if response.status_code == 429:
            seconds = retry_after_seconds(response.headers.get("retry-after"))
            self.backoff_until = time.time() + seconds
            self.changed()

    def _authorization(self, scope: str) -> str | None:
        if self._basic is not None:
            return self._basic
        token = self._tokens.get(scope)
        if token is not None and token[1] > time.monotonic():
            return f"Bearer {token[0]}"
        return None

    async def _authenticate(self, challenge: str, scope: str) -> None:
        scheme, _, rest = challenge.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(rest))
        if scheme.lower() == "basic" and self.credentials:
            user, password = self.credentials
            self._basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            return
        if scheme.lower() != "bearer" or "realm" not in params:
            raise UpstreamError(401, f"upstream {self.url} asks for {scheme or 'no'} auth")
        query = {"scope": params.get("scope", scope)}
        if not query["scope"]:  # GET /v2/ names no repository
            del query["scope"]
        if "service" in params:
            query["service"] = params["service"]
        try:
            response = await self.client.get(
                params["realm"], params=query, auth=self.credentials or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError as exc:
            raise UpstreamError(0, f"upstream token service unreachable: {exc}") from exc
        if response.status_code in (401, 403):
            who = f"the credentials of {self.credentials[0]!r}" if self.credentials else "anonymous"
            raise UpstreamError(401, f"{self.url} refused {who} (HTTP {response.status_code})")
        _raise_for(response, "upstream token request")
        try:
            body = json_document(response.content)
        except ValueError as exc:
            raise UpstreamError(502, f"upstream token response rejected: {exc}") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not token or not isinstance(token, str):
            raise UpstreamError(502, "upstream token response has no token")
        expires_in = body.get("expires_in")
        valid = isinstance(expires_in, int) and not isinstance(expires_in, bool)
        lifetime = expires_in if valid and 0 < expires_in < 10**8 else _DEFAULT_TOKEN_SECONDS
        moment = time.monotonic()
        if len(self._tokens) >= _MAX_TOKENS:
            # One token per repository asked for: forget the expired ones.
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > moment}
        self._tokens[scope] = (token, moment + lifetime - _RENEW_EARLY_SECONDS)


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    raise UpstreamError(
        response.status_code,
        f"{what}: upstream answered {response.status_code}",
        response.headers.get("retry-after"),
    )


def _count(header: str | None) -> int | None:
    """The number of a RateLimit header (`76;w=21600`: 76), or None."""
    if header is None:
        return None
    number = header.split(";", 1)[0].strip()
    return int(number) if number.isdigit() and len(number) < 19 else None


def retry_after_seconds(header: str | None, moment: datetime | None = None) -> float:
    """How long a 429's Retry-After (seconds, or an HTTP date) asks to wait, within
    bounds; BACKOFF_SECONDS when it says nothing usable."""
    if header is not None:
        text = header.strip()
        if text.isdigit():
            return float(min(int(text[:9]), MAX_BACKOFF_SECONDS))
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            left = (when - (moment or datetime.now(UTC))).total_seconds()
            return min(max(left, 0.0), MAX_BACKOFF_SECONDS)
    return BACKOFF_SECONDS
