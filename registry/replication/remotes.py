"""Remote registries that replication copies to or from, kept as endpoints: a URL,
credentials (Basic, or the Docker token dance through the remote's challenge), TLS
verification and a CA.

- A remote is checked when it is made, and on demand: GET /v2/ with its credentials. A
  bad URL, a host that cannot be reached, a TLS failure or refused credentials are a 400
  that says which.
- Its password is sealed with the sealing key (auth/sealed.py) and never shown or logged
  again; the API says only whether it has one.
- A namespace's remote may not be the registry's own network (loopback, private,
  link-local), checked on every address its name resolves to, unless
  `replication.allow_private_targets` is on: otherwise its owners' rules could reach
  what only the registry can reach. The registry's own remotes (admins') may be anywhere.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from registry.addresses import resolves_private
from registry.auth.sealed import Sealer
from registry.config import ReplicationSettings
from registry.errors import Conflict, Invalid, NotFound
from registry.kept import check_kept_name, keeper
from registry.metadata import events
from registry.metadata import remotes as q
from registry.metadata.accounts import namespace_id
from registry.metadata.database import Database
from registry.metadata.replication import rules_using
from registry.proxy.upstream import Upstream, UpstreamError


@dataclass(frozen=True, slots=True)
class RemoteInfo:
    """A remote as the API shows it: never its password."""

    namespace: str
    name: str
    url: str
    username: str | None
    has_password: bool
    verify_tls: bool
    has_ca: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How to reach a remote: what the checks and the copies use."""

    url: str
    username: str | None
    password: str | None
    verify: ssl.SSLContext | bool


class Remotes:
    def __init__(self, db: Database, sealer: Sealer, settings: ReplicationSettings) -> None:
        self.db = db
        self.sealer = sealer
        self.settings = settings

    async def add(
        self,
        namespace: str,
        name: str,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        verify_tls: bool = True,
        ca_pem: str | None = None,
    ) -> RemoteInfo:
        """Make a remote of `namespace` ('' for an admin's), once it answers."""
        check_kept_name(name)
        if password and not username:
            raise Invalid(message="password: given without a username")
        endpoint = Endpoint(
            check_url(url), username or None, password or None, _verify(verify_tls, ca_pem)
        )
        if namespace:
            async with self.db.read() as conn:
                if await namespace_id(conn, namespace) is None:
                    raise NotFound(message=f"no namespace named {namespace!r}")
            await self._refuse_private(endpoint.url)
        await self.check(endpoint)
        sealed = self.sealer.seal(password) if password else None
        async with self.db.write() as conn:
            made = await q.insert(
                conn, namespace, name, endpoint.url, endpoint.username, sealed, verify_tls, ca_pem
            )
            if made is None:
                raise Conflict(message=f"{keeper(namespace)} has a remote named {name!r} already")
            await events.record(
                conn,
                "remote.create",
                namespace=namespace or None,
                detail={"remote": name, "url": endpoint.url, "username": endpoint.username},
            )
            row = await q.find(conn, namespace, name)
        assert row is not None
        return _info(row)

    async def listed(self, namespace: str | None) -> list[RemoteInfo]:
        async with self.db.read() as conn:
            return [_info(row) for row in await q.listed(conn, namespace)]

    async def remove(self, namespace: str, name: str) -> None:
        async with self.db.write() as conn:
            row = await q.find(conn, namespace, name)
            if row is None:
                raise _unknown(namespace, name)
            using = await rules_using(conn, row.id)
            if using:
                raise Conflict(
                    {"rules": using},
                    message=f"remote {name!r} is used by the replication rules "
                    f"{', '.join(using)}: remove them or point them elsewhere first",
                )
            await q.remove(conn, namespace, name)
            await events.record(
                conn, "remote.delete", namespace=namespace or None, detail={"remote": name}
            )

    async def endpoint(self, namespace: str, name: str) -> Endpoint:
        """The remote's address and credentials, its password unsealed. A namespace's
        remote is checked again for the registry's own network (each process checks
        when it connects): its name may resolve elsewhere now than when it was made."""
        async with self.db.read() as conn:
            row = await q.find(conn, namespace, name)
        if row is None:
            raise _unknown(namespace, name)
        if namespace:
            await self._refuse_private(row.url)
        password = self.sealer.open(row.secret) if row.secret else None
        if row.secret and password is None:
            raise Invalid(
                message=f"the password of remote {name!r} was sealed with another sealing "
                "key (sealing_key_file): enter it again"
            )
        return Endpoint(row.url, row.username, password, _verify(row.verify_tls, row.ca_pem))

    async def check(self, endpoint: Endpoint) -> None:
        """GET /v2/ at the remote with its credentials; Invalid says what failed."""
        async with self.client(endpoint) as client:
            upstream = Upstream(endpoint.url, client, endpoint.username, endpoint.password)
            try:
                await upstream.ping()
            except UpstreamError as exc:
                raise Invalid(message=f"remote {endpoint.url}: {_reason(exc, endpoint)}") from None

    def client(self, endpoint: Endpoint) -> httpx.AsyncClient:
        timeout = self.settings.timeout_seconds
        return httpx.AsyncClient(timeout=timeout, verify=endpoint.verify, follow_redirects=True)

    async def _refuse_private(self, url: str) -> None:
        if self.settings.allow_private_targets:
            return
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        private = await resolves_private(parts.hostname or "", port)
        if private is not None:
            raise Invalid(
                message=f"url: {parts.hostname} is the non-public address {private}; only the "
                "registry's own remotes (an admin's, /api/v1/remotes) may be one, or set "
                "replication.allow_private_targets"
            )


def check_url(url: str) -> str:
    """A remote's URL: http(s), a host, no credentials, no path beyond `/`; without its
    trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid({"url": url[:200]}, message="url: expected an http:// or https:// URL")
    if parts.username or parts.password:
        raise Invalid(
            {"url": url[:200]}, message="url: no credentials in the URL; use username and password"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise Invalid(
            {"url": url[:200]},
            message="url: the registry's root only (https://host[:port]); repositories are "
            "named by rules",
        )
    return f"{parts.scheme}://{parts.netloc}"


def _verify(verify_tls: bool, ca_pem: str | None) -> ssl.SSLContext | bool:
    if not verify_tls:
        return False
    if not ca_pem:
        return True
    try:
        return ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise Invalid(message=f"ca_pem: not PEM certificates ({exc})") from None


def _reason(exc: UpstreamError, endpoint: Endpoint) -> str:
    if exc.status == 0:
        return str(exc).removeprefix(f"upstream {endpoint.url} ")
    if exc.status == 401:
        if endpoint.username:
            return f"it refused the credentials of {endpoint.username!r}"
        return "it asks for credentials: give a username and password"
    return f"{exc}; is it a registry (the distribution API at /v2/)?"


def _unknown(namespace: str, name: str) -> NotFound:
    return NotFound(message=f"{keeper(namespace)} has no remote named {name!r}")


def _info(row: q.RemoteRow) -> RemoteInfo:
    return RemoteInfo(
        row.namespace,
        row.name,
        row.url,
        row.username,
        row.secret is not None,
        row.verify_tls,
        row.ca_pem is not None,
        row.created_at,
    )
