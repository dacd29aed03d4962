"""Logins against an LDAP directory: search-then-bind with a service account.

- The service account finds the user's entry with `user_filter` (the name escaped as
  RFC 4515 asks, so a name cannot widen the filter), then a fresh connection binds as
  that entry with the password given. An empty password is refused before anything is
  sent: to LDAP it is an unauthenticated bind, which succeeds.
- Groups come from the user's `group_attribute` (memberOf) or from a search under
  `group_base` (group objects naming the user's DN). A group is named by its DN in
  lower case, which is what group roles map.
- The service account's connections are kept in a small pool. ldap3 is blocking, so
  every exchange runs in a worker thread, at most `pool_size` at once, each bounded by
  `timeout_seconds`. A directory that cannot be reached or refuses the service account
  raises DirectoryUnavailable, which the API answers with 503.
"""

from __future__ import annotations

import logging
import math
import queue
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
from ldap3 import BASE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from registry.config import LdapSettings
from registry.errors import Unavailable

log = logging.getLogger("registry.auth.ldap")
T = TypeVar("T")


class DirectoryUnavailable(Unavailable):
    """The directory cannot be asked; the message says which and why."""


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    dn: str
    name: str
    groups: frozenset[str]


class Directory:
    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        parts = urlsplit(settings.url)
        secure = parts.scheme == "ldaps"
        tls = None
        if secure or settings.start_tls:
            tls = Tls(
                ca_certs_file=settings.ca_file or None,
                validate=ssl.CERT_REQUIRED if settings.verify else ssl.CERT_NONE,
            )
        self.where = f"{parts.hostname}:{parts.port or (636 if secure else 389)}"
        self._server = Server(
            parts.hostname or "",
            port=parts.port or (636 if secure else 389),
            use_ssl=secure,
            tls=tls,
            get_info="NO_INFO",
            connect_timeout=settings.timeout_seconds,
        )
        # ldap3 sets SO_RCVTIMEO from whole seconds.
        self._receive_timeout = max(1, math.ceil(settings.timeout_seconds))
        self._idle: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._threads = anyio.CapacityLimiter(settings.pool_size)

    async def login(self, name: str, password: str) -> DirectoryUser | None:
        """The user `name` if `password` is theirs; None for a wrong password, an unknown
        name, or one the user filter leaves out (a disabled account)."""
        if not password:
            return None
        return await self._run(lambda: self._login(name, password))

    async def lookup(self, dn: str) -> DirectoryUser | None:
        """The entry at `dn` as the user filter sees it now, with its groups; None if it
        is gone or filtered out. Asked when a refresh token is redeemed."""
        return await self._run(lambda: self._lookup(dn))

    async def _run(self, work: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(work, limiter=self._threads)

    # In a worker thread from here on.

    def _login(self, name: str, password: str) -> DirectoryUser | None:
        found = self._with_service(lambda conn: self._find(conn, name))
        if found is None:
            return None
        if not self._binds(found.dn, password):
            return None
        return found

    def _lookup(self, dn: str) -> DirectoryUser | None:
        def search(conn: Connection) -> DirectoryUser | None:
            filter_ = self.settings.user_filter.replace("{username}", "*")
            conn.search(dn, filter_, BASE, attributes=self._attributes())
            return self._user(conn, conn.entries[0]) if len(conn.entries) == 1 else None

        return self._with_service(search)

    def _find(self, conn: Connection, name: str) -> DirectoryUser | None:
        filter_ = self.settings.user_filter.replace("{username}", escape_filter_chars(name))
        conn.search(self.settings.user_base, filter_, SUBTREE, attributes=self._attributes())
        if len(conn.entries) != 1:
            # None, or several: a filter that is not unique per name must not let one of
            # them in by chance.
            if len(conn.entries) > 1:
                log.warning(
                    "LDAP: %d entries match %r under %s; auth.ldap.user_filter must match "
                    "one entry per name",
                    len(conn.entries),
                    name,
                    self.settings.user_base,
                )
            return None
        return self._user(conn, conn.entries[0])

    def _attributes(self) -> list[str]:
        wanted = [self.settings.username_attribute]
        if self.settings.group_attribute:
            wanted.append(self.settings.group_attribute)
        return wanted

    def _user(self, conn: Connection, entry: Any) -> DirectoryUser | None:
        values = entry.entry_attributes_as_dict
        names = values.get(self.settings.username_attribute) or []
        if not names:
            return None
        dn = str(entry.entry_dn)
        if self.settings.group_attribute:
            groups = [str(g) for g in values.get(self.settings.group_attribute) or []]
        elif self.settings.group_base:
            filter_ = self.settings.group_filter.replace("{dn}", escape_filter_chars(dn))
            conn.search(self.settings.group_base, filter_, SUBTREE, attributes=[])
            groups = [str(group.entry_dn) for group in conn.entries]
        else:
            groups = []
        return DirectoryUser(dn, str(names[0]), frozenset(g.lower() for g in groups))

    def _binds(self, dn: str, password: str) -> bool:
        user = Connection(self._server, dn, password, receive_timeout=self._receive_timeout)
        try:
            user.open()
            if self.settings.start_tls:
                user.start_tls()
            return bool(user.bind())
        except LDAPException as exc:
            raise self._unavailable(exc) from exc
        finally:
            user.unbind()

    def _with_service(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a pooled service connection. A connection that fails is dropped
        and the work tried once more on a new one (the directory may have closed an idle
        connection); a second failure means the directory is down."""
        for attempt in range(2):
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = None
            try:
                if conn is None:
                    conn = self._service_connection()
                result = work(conn)
            except LDAPException as exc:
                if conn is not None:
                    conn.unbind()
                if attempt == 1:
                    raise self._unavailable(exc) from exc
                continue
            self._idle.put(conn)
            return result
        raise AssertionError("unreachable")

    def _service_connection(self) -> Connection:
        conn = Connection(
            self._server,
            self.settings.bind_dn or None,
            self.settings.bind_password or None,
            receive_timeout=self._receive_timeout,
            raise_exceptions=False,
        )
        conn.open()
        if self.settings.start_tls:
            conn.start_tls()
        if not conn.bind():
            result = conn.result or {}
            conn.unbind()
            raise DirectoryUnavailable(
                message=f"the LDAP directory at {self.where} refused the service account "
                f"({result.get('description', 'bind failed')}): check auth.ldap.bind_dn "
                "and bind_password"
            )
        return conn

    def _unavailable(self, exc: Exception) -> DirectoryUnavailable:
        if isinstance(exc, DirectoryUnavailable):
            return exc
        log.error("LDAP directory at %s: %s: %s", self.where, type(exc).__name__, exc)
        return DirectoryUnavailable(
            message=f"the LDAP directory at {self.where} cannot be reached "
            f"({type(exc).__name__}); local admins can still log in"
        )
