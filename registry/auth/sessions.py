"""Console logins: a random secret in an HttpOnly, SameSite=Strict cookie (Secure when the
request came over HTTPS), its SHA-256 in the database with the account and a CSRF token.

- A login always makes a new session, so a cookie planted before it is worth nothing
  (session fixation); logout deletes the row.
- Each page reads the session and the account as it stands now: a session ends when it
  expires, or when the account's password changes or it is disabled or removed.
- Every form carries the session's CSRF token, compared in constant time; the login form,
  which has no session yet, carries one that must match a cookie set with the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from registry.auth.accounts import Account
from registry.auth.identity import Identity
from registry.auth.service import AuthService
from registry.errors import Unauthorized
from registry.metadata import console as q
from registry.metadata.database import Database
from registry.metadata.models import now

COOKIE = "registry_session"
LOGIN_COOKIE = "registry_login"


@dataclass(frozen=True, slots=True)
class Session:
    identity: Identity
    csrf: str


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class ConsoleSessions:
    def __init__(self, db: Database, auth: AuthService, hours: float) -> None:
        self.db = db
        self.auth = auth
        self.lifetime = timedelta(hours=hours)

    async def open(self, name: str, password: str, client: str) -> str:
        """Log in (within the failed-login limit, as /token); returns the cookie's secret.
        Only users log in here: robots are for machines."""
        return await self.open_for(await self.auth.login(name, password, client))

    async def open_for(self, account: Account) -> str:
        """A session for an account already proven (by a password, or a provider)."""
        if account.identity.kind != "user":
            raise Unauthorized(message="robot accounts cannot log in to the console")
        if account.identity.token_id is not None:
            raise Unauthorized(
                message="personal access tokens are for docker login and the API; log in "
                "to the console with your password or single sign-on"
            )
        secret = secrets.token_urlsafe(32)
        moment = now()
        async with self.db.write() as conn:
            await q.remove_expired(conn, moment)
            await q.add(
                conn,
                _key(secret),
                account.identity.name,
                account.credential,
                secrets.token_urlsafe(32),
                moment + self.lifetime,
            )
        return secret

    async def find(self, secret: str | None) -> Session | None:
        """The session a cookie stands for, if it is still good."""
        if not secret or len(secret) > 128:
            return None
        async with self.db.read() as conn:
            found = await q.find(conn, _key(secret))
        if found is None:
            return None
        name, credential, csrf, expires = found
        if expires <= now():
            return None
        account = await self.auth.accounts.account(name)
        if account is None or not hmac.compare_digest(account.credential, credential):
            return None
        return Session(account.identity, csrf)

    async def close(self, secret: str | None) -> None:
        if secret and len(secret) <= 128:
            async with self.db.write() as conn:
                await q.remove(conn, _key(secret))
