"""Logins, grants and tokens: the token endpoint's and the API guard's view of auth."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import time
from typing import Any

from registry import context
from registry.auth.accounts import NOTHING, Account, Accounts
from registry.auth.identity import ANONYMOUS, Identity, kind_of
from registry.auth.ratelimit import LoginLimiter
from registry.auth.scopes import CATALOG, REPOSITORY_ACTIONS, Scope
from registry.auth.tokens import Issued, TokenAuthority, TokenInvalid
from registry.config import AuthSettings
from registry.errors import TooManyRequests, Unauthorized
from registry.metadata import events
from registry.names import namespace_of

log = logging.getLogger("registry.auth")

# Basic credentials on /v2/ come with every request; a verified pair is remembered this
# long so that each request does not pay for an argon2 check. Remembered, not trusted:
# the account is checked in the database on every request all the same (basic()).
_BASIC_CACHE_SECONDS = 60
_BASIC_CACHE_SIZE = 1_000


class AuthService:
    def __init__(self, settings: AuthSettings, accounts: Accounts, tokens: TokenAuthority) -> None:
        self.settings = settings
        self.accounts = accounts
        self.tokens = tokens
        self.limiter = LoginLimiter(
            accounts.db, settings.login_attempts, settings.login_window_seconds
        )
        self._basic: dict[tuple[str, bytes], tuple[Account, float]] = {}

    async def login(self, name: str, password: str, client: str) -> Account:
        """Check a name and password (or robot secret), within the failed-login limit."""
        wait, failures = await self.limiter.check(name, client)
        if wait is not None:
            log.warning("login for %r from %s refused: too many failures", name, client)
            raise TooManyRequests(
                message=f"too many failed logins; try again in {wait} seconds",
                headers={"Retry-After": str(wait)},
            )
        account = await self.accounts.authenticate(name, password)
        if account is None:
            await self.limiter.failed(name, client)
            log.warning("failed login for %r from %s", name, client)
            tried = dataclasses.replace(
                context.current(), actor=name[:255], actor_kind=kind_of(name), token=None
            )
            await self._audit("login", outcome="failure", by=tried)
            raise Unauthorized(message="incorrect username or password")
        if failures:
            await self.limiter.succeeded(name, client)
        context.current().act_as(account.identity.kind, account.identity.name)
        await self._audit("login")
        return account

    async def _audit(self, action: str, **fields: Any) -> None:
        async with self.accounts.db.write() as conn:
            await events.record(conn, action, **fields)

    async def basic(
        self, name: str, password: str, client: str, namespace: str | None
    ) -> tuple[Identity, frozenset[str]]:
        """Log in with credentials that come with a request, and say what the account may
        do in `namespace` (nothing when None). The password is checked once a minute per
        process; whether the account still exists, is enabled, has that password and
        is an admin is read on every request, in the query that reads its access."""
        key = (name, hashlib.sha256(password.encode()).digest())
        hit = self._basic.get(key)
        if hit is not None and hit[1] > time.monotonic():
            account = hit[0]
        else:
            account = await self.login(name, password, client)
            if len(self._basic) >= _BASIC_CACHE_SIZE:
                self._basic.clear()
            self._basic[key] = (account, time.monotonic() + _BASIC_CACHE_SECONDS)
        current = await self.accounts.recheck(account, namespace)
        if current is None:
            self._basic.pop(key, None)
            raise Unauthorized(
                message=f"account {name[:100]!r} was disabled or removed, or its password "
                "or secret changed; log in again"
            )
        return current

    async def grant(self, identity: Identity, requested: list[Scope]) -> list[Scope]:
        """What to put in a token: each requested scope cut down to what `identity` may do.
        Scopes it may do nothing in are left out, as the token spec asks."""
        granted: dict[tuple[str, str], set[str]] = {}
        for scope in requested:
            if (scope.type, scope.name) == CATALOG and "*" in scope.actions:
                # Anyone may ask for the catalog; it lists only what they may pull.
                granted.setdefault(CATALOG, set()).add("*")
            elif scope.type == "repository":
                allowed = await self.accounts.allowed(identity, namespace_of(scope.name))
                wanted = REPOSITORY_ACTIONS if "*" in scope.actions else scope.actions
                actions = wanted & allowed
                if actions:
                    granted.setdefault((scope.type, scope.name), set()).update(actions)
        return [Scope(kind, name, frozenset(actions)) for (kind, name), actions in granted.items()]

    async def permits(self, identity: Identity, scope: Scope) -> bool:
        if scope.type != "repository":
            return within(scope, NOTHING)
        return within(scope, await self.accounts.allowed(identity, namespace_of(scope.name)))

    async def issue(
        self, identity: Identity, requested: list[Scope], granted: list[Scope]
    ) -> Issued:
        """A token; one that may push or delete is audited, as is a refusal of either."""
        issued = self.tokens.issue(identity.name, granted)
        wanted = _writes(requested)
        if wanted:
            given = _writes(granted)
            await self._audit(
                "token",
                outcome="success" if given == wanted else "denied",
                detail={"requested": wanted, "granted": given, "jti": issued.jti},
            )
        return issued

    def refresh_token(self, account: Account) -> str:
        return self.tokens.issue_refresh(account.identity.name, account.credential)

    async def redeem(self, refresh_token: str) -> Account:
        """The account a refresh token stands for, if the token and account are still good."""
        try:
            subject, credential = self.tokens.verify_refresh(refresh_token)
        except TokenInvalid as exc:
            raise Unauthorized(message=f"invalid refresh token: {exc}") from exc
        account = await self.accounts.account(subject)
        if account is None or not hmac.compare_digest(account.credential, credential):
            raise Unauthorized(
                message="refresh token revoked: the account changed its credential, was "
                "disabled or removed; log in again"
            )
        return account

    async def identity(self, subject: str) -> Identity:
        """The identity behind a token's subject, as it stands now."""
        if not subject:
            return ANONYMOUS
        account = await self.accounts.account(subject)
        return account.identity if account else ANONYMOUS


def _writes(scopes: list[Scope]) -> list[str]:
    """The push and delete parts of scopes, as text (repository:a/b:delete,push)."""
    found = []
    for scope in scopes:
        actions = REPOSITORY_ACTIONS if "*" in scope.actions else scope.actions
        writes = sorted(actions & {"push", "delete"})
        if scope.type == "repository" and writes:
            found.append(f"{scope.type}:{scope.name}:{','.join(writes)}")
    return found


def within(scope: Scope, actions: frozenset[str]) -> bool:
    """Whether `actions` (held in the scope's namespace) cover `scope`; the catalog is
    anyone's, since it lists only what the caller may pull."""
    if scope.type == "repository":
        return scope.actions <= actions
    return (scope.type, scope.name) == CATALOG
