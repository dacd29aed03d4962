"""Logins, grants and tokens: the token endpoint's and the API guard's view of auth."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING, Any

from registry import context
from registry.auth.accounts import (
    ELSEWHERE,
    NOTHING,
    TOKEN_PREFIX,
    Account,
    AccountError,
    Accounts,
)
from registry.auth.identity import ANONYMOUS, ROBOT_PREFIX, Identity, kind_of
from registry.auth.ratelimit import LoginLimiter
from registry.auth.scopes import CATALOG, REPOSITORY_ACTIONS, Scope
from registry.auth.tokens import Issued, TokenAuthority, TokenInvalid
from registry.config import AuthSettings
from registry.errors import TooManyRequests, Unauthorized, Unavailable
from registry.metadata import events
from registry.names import namespace_of

if TYPE_CHECKING:  # ldap3 is imported only where a directory is set up
    from registry.auth.ldap import Directory
    from registry.auth.oidc import Provider, ProviderLogin
    from registry.auth.sealed import Sealer

log = logging.getLogger("registry.auth")

# A user whose identity is kept by a directory or an OpenID provider is asked about there
# again at a token request (with a personal access token, or a refresh token) at most
# this often per process; a Basic login is remembered as long (below).
SOURCE_RECHECK_SECONDS = 60

# Basic credentials on /v2/ come with every request; a verified pair is remembered this
# long so that each request does not pay for an argon2 check. Remembered, not trusted:
# the account is checked in the database on every request all the same (basic()).
_BASIC_CACHE_SECONDS = 60
_BASIC_CACHE_SIZE = 1_000


class AuthService:
    def __init__(
        self,
        settings: AuthSettings,
        accounts: Accounts,
        tokens: TokenAuthority,
        directory: Directory | None = None,
        provider: Provider | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.tokens = tokens
        self.directory = directory
        self.provider = provider
        self.sealer = sealer
        self._rechecked: dict[str, float] = {}
        self.limiter = LoginLimiter(
            accounts.db, settings.login_attempts, settings.login_window_seconds
        )
        self._basic: dict[tuple[str, bytes], tuple[Account, float]] = {}

    async def configure(self) -> None:
        """At start: the settings' group roles into the database."""
        await self.accounts.configure_group_roles(
            [(m.source, m.group, m.namespace, m.role) for m in self.settings.group_roles]
        )

    async def login(self, name: str, password: str, client: str) -> Account:
        """Check a name and password (or robot secret, or personal access token, or a
        directory's password), within the failed-login limit. Every attempt is audited
        with the source that decided it."""
        wait, failures = await self.limiter.check(name, client)
        if wait is not None:
            log.warning("login for %r from %s refused: too many failures", name, client)
            raise TooManyRequests(
                message=f"too many failed logins; try again in {wait} seconds",
                headers={"Retry-After": str(wait)},
            )
        source = _source_of(name, password)
        refusal = "incorrect username or password"
        try:
            found = await self.accounts.authenticate(
                name,
                password,
                external=self.directory is not None,
                admins_only=self.settings.local_login == "admins",
            )
            if found == ELSEWHERE:
                source = "ldap"
                found = await self._directory_login(name, password)
        except AccountError as exc:  # LocalLoginRefused among them
            found, refusal = None, str(exc)
        except Unavailable as exc:  # the directory is down
            await self._failed(name, "ldap", exc.text)
            raise
        if not isinstance(found, Account):
            await self.limiter.failed(name, client)
            log.warning("failed login for %r from %s (%s): %s", name, client, source, refusal)
            await self._failed(name, source, refusal)
            raise Unauthorized(message=refusal)
        if found.source == "token":
            await self._still_known(found)
        if failures:
            await self.limiter.succeeded(name, client)
        await self.accounts.token_used(found, client)
        context.current().act_as(found.identity.kind, found.identity.name)
        await self._audit("login", detail={"source": found.source})
        return found

    async def _directory_login(self, name: str, password: str) -> Account | None:
        assert self.directory is not None
        entry = await self.directory.login(name, password)
        if entry is None:
            return None
        return await self.accounts.external_login(
            "ldap", entry.dn.lower(), entry.name.lower(), entry.groups
        )

    async def _failed(self, name: str, source: str, reason: str) -> None:
        tried = dataclasses.replace(
            context.current(), actor=name[:255], actor_kind=kind_of(name), token=None
        )
        await self._audit(
            "login", outcome="failure", by=tried, detail={"source": source, "reason": reason}
        )

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
        issued = self.tokens.issue(identity.name, granted, identity.token_id)
        wanted = _writes(requested)
        if wanted:
            given = _writes(granted)
            detail: dict[str, Any] = {"requested": wanted, "granted": given, "jti": issued.jti}
            via = await self._through_groups(identity, granted) if identity.kind == "user" else []
            if via:
                detail["through_groups"] = via
            await self._audit(
                "token", outcome="success" if given == wanted else "denied", detail=detail
            )
        return issued

    async def _through_groups(self, identity: Identity, granted: list[Scope]) -> list[str]:
        """The group roles behind a grant (`group: role in namespace`), for its audit."""
        namespaces = {namespace_of(scope.name) for scope in granted if scope.type == "repository"}
        _, roles = await self.accounts.roles_of(identity.name)
        return [
            f"{group}: {role} in {namespace}" if namespace else f"{group}: admin"
            for namespace, role, group in roles
            if group is not None and (namespace in namespaces or not namespace)
        ]

    def refresh_token(self, account: Account) -> str:
        return self.tokens.issue_refresh(
            account.identity.name, account.credential, account.identity.token_id
        )

    async def redeem(self, refresh_token: str) -> Account:
        """The account a refresh token stands for, if the token and account are still
        good. A directory's user is looked up there again: gone or filtered out (disabled)
        means refused, and their groups are read afresh."""
        try:
            subject, credential, token_id = self.tokens.verify_refresh(refresh_token)
        except TokenInvalid as exc:
            raise Unauthorized(message=f"invalid refresh token: {exc}") from exc
        account = await self.accounts.account(subject, token_id)
        if account is None or not hmac.compare_digest(account.credential, credential):
            raise Unauthorized(
                message="refresh token revoked: the account changed its credential, was "
                "disabled or removed; log in again"
            )
        await self._still_known(account)
        return account

    async def provider_login(self, login: ProviderLogin) -> Account:
        """The account of a user an OpenID provider has just vouched for (made at their
        first login), audited with source oidc."""
        try:
            account = await self._provider_account(login)
        except AccountError as exc:
            await self._failed(login.username, "oidc", str(exc))
            raise
        context.current().act_as("user", account.identity.name)
        await self._audit("login", detail={"source": "oidc"})
        return account

    async def _provider_account(self, login: ProviderLogin) -> Account:
        assert self.sealer is not None
        refresh = self.sealer.seal(login.refresh_token) if login.refresh_token else None
        return await self.accounts.external_login(
            "oidc", login.external_id, login.username, login.groups, refresh
        )

    async def _still_known(self, account: Account) -> None:
        """Ask the user's directory or provider whether it still knows them, and take
        their groups afresh; refuse the login if not. At most once a minute per user
        and process (SOURCE_RECHECK_SECONDS)."""
        name = account.identity.name
        if account.home == "local" or self._rechecked.get(name, 0) > time.monotonic():
            return
        if account.home == "ldap" and self.directory is not None and account.external_id:
            entry = await self.directory.lookup(account.external_id)
            if entry is None:
                raise Unauthorized(
                    message=f"{name!r} is no longer in the LDAP directory, or is disabled "
                    "there; ask its administrators"
                )
            await self.accounts.external_login("ldap", account.external_id, name, entry.groups)
        elif account.home == "oidc" and self.provider is not None and self.sealer is not None:
            sealed = await self.accounts.external_refresh(name)
            token = self.sealer.open(sealed) if sealed else None
            if token is not None:
                login = await self.provider.refresh(token)
                if login is None or login.external_id != account.external_id:
                    raise Unauthorized(
                        message=f"the identity provider no longer accepts {name!r} (disabled "
                        "or logged out there): log in to the console again"
                    )
                await self._provider_account(login)
        if len(self._rechecked) >= _BASIC_CACHE_SIZE:
            self._rechecked.clear()
        self._rechecked[name] = time.monotonic() + SOURCE_RECHECK_SECONDS

    async def identity(self, subject: str, token_id: int | None = None) -> Identity:
        """The identity behind a token's subject (and personal access token), as it
        stands now."""
        if not subject:
            return ANONYMOUS
        account = await self.accounts.account(subject, token_id)
        return account.identity if account else ANONYMOUS


def _source_of(name: str, password: str) -> str:
    """Which kind of credential a login presents, before it is checked."""
    if name.startswith(ROBOT_PREFIX):
        return "robot"
    return "token" if password.startswith(TOKEN_PREFIX) else "local"


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
