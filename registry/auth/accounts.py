"""Accounts and what they may do: users, namespaces with members and roles, robots.

Rules:
- A repository's namespace is its first path component (`library` for single names).
- Roles: guest pulls; developer also pushes; maintainer also deletes; owner also manages
  members and robots. Admins may do anything anywhere.
- Anyone, anonymous included, may pull from a public namespace.
- Every user owns a personal namespace named after them, made with the account.
- A robot may do what its grants list, per namespace, until it expires.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.auth.identity import ROBOT_PREFIX, Identity, Limits
from registry.auth.passwords import (
    credential_tag,
    hash_password,
    new_secret,
    secret_digest,
    secret_matches,
    verify_password,
)
from registry.auth.scopes import DELETE, PULL, PUSH, REPOSITORY_ACTIONS
from registry.config import GROUP_SOURCES, MirrorSettings
from registry.errors import Denied
from registry.metadata import accounts as q
from registry.metadata import events, remotes, replication, trust
from registry.metadata.accounts import GroupRoleRow as GroupRoleRow
from registry.metadata.database import Database

# Each password check holds 19 MiB for ~40 ms; a few at once keep memory bounded under a
# burst of logins.
_CONCURRENT_HASHES = 4

ROLES: dict[str, frozenset[str]] = {
    "guest": frozenset({PULL}),
    "developer": frozenset({PULL, PUSH}),
    "maintainer": frozenset({PULL, PUSH, DELETE}),
    "owner": frozenset({PULL, PUSH, DELETE}),
}
EVERYTHING = frozenset(REPOSITORY_ACTIONS)
MIN_PASSWORD_LENGTH = 8
NOTHING: frozenset[str] = frozenset()
MIRRORED = frozenset({PULL})

# A user name is also a namespace, so it follows the grammar of one name component.
_USER_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_ROBOT_NAME = re.compile(r"[a-z0-9]+(?:[._+-][a-z0-9]+)*")
# A namespace pattern: a namespace name with * (any run) and ? (one character).
_PATTERN = re.compile(r"[a-z0-9._*?-]{1,255}")
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
# A personal access token reads rpat_<id>_<secret>: the id finds its row, the secret
# proves it. The prefix lets secret scanners (and this code) tell it from a password.
TOKEN_PREFIX = "rpat_"


class AccountError(Exception):
    """A management request that cannot be done; the message says why."""


class AccountConflict(AccountError):
    """A change the accounts as they stand refuse (409)."""


class AccountExists(AccountConflict):
    pass


class LastOwner(AccountConflict):
    pass


class AccountUnknown(AccountError):
    pass


@dataclass(frozen=True, slots=True)
class Account:
    """An authenticated identity, the fingerprint of the credential it proved, and
    where that credential was checked (local, ldap, oidc, token, robot)."""

    identity: Identity
    credential: str
    source: str = "local"
    # Where the user's identity is kept (local, ldap, oidc), and their id there (a DN;
    # an issuer and subject), for asking again at token requests.
    home: str = "local"
    external_id: str | None = None


# authenticate()'s answer for a name that is not a local account: another source decides.
ELSEWHERE = "elsewhere"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A personal access token as its owner sees it (never its secret)."""

    name: str
    scopes: list[tuple[str, list[str]]]
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    last_used_from: str | None


class LocalLoginRefused(AccountError):
    """A local account that may not log in here (auth.local_login is admins)."""


@dataclass(frozen=True, slots=True)
class RobotInfo:
    name: str
    expires_at: datetime | None
    disabled: bool
    grants: dict[str, list[str]]


def check_user_name(name: str) -> str:
    if len(name) > 64 or not _USER_NAME.fullmatch(name):
        raise AccountError(
            f"invalid user name {name[:80]!r}: use lower-case letters, digits and . _ - "
            "between them, at most 64 characters"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return password


def check_actions(actions: list[str]) -> str:
    unknown = set(actions) - REPOSITORY_ACTIONS
    if unknown or not actions:
        raise AccountError(
            f"actions must be some of pull, push, delete; got {','.join(actions) or 'none'}"
        )
    return ",".join(sorted(set(actions)))


class Accounts:
    def __init__(self, db: Database, mirror: MirrorSettings | None = None) -> None:
        self.db = db
        # With a mirror, repositories of namespaces that have no row here (all of them
        # when mirror-only) are mirrored, and pulling them follows the mirror's rule.
        self.mirror = mirror
        self._hashing = anyio.CapacityLimiter(_CONCURRENT_HASHES)

    # Authentication

    async def authenticate(
        self, name: str, secret: str, *, external: bool = False, admins_only: bool = False
    ) -> Account | str | None:
        """The account if `secret` is its password (local users), secret (robots) or
        one of its personal access tokens. With `external` (another source is set up),
        a name that has no local account answers ELSEWHERE instead of None. With
        `admins_only`, a local user who is not an admin is refused (LocalLoginRefused)."""
        if name.startswith(ROBOT_PREFIX):
            async with self.db.read() as conn:
                robot = await q.robot_by_name(conn, name)
            if not secret_matches(secret, robot.secret_digest if robot else None):
                return None
            return _robot_account(robot)
        if secret.startswith(TOKEN_PREFIX):
            return await self._token_login(name, secret)
        async with self.db.read() as conn:
            user = await q.user_by_name(conn, name)
        if external and (user is None or user.source != "local"):
            return ELSEWHERE
        local = user if user is not None and user.source == "local" else None
        # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
        if not await anyio.to_thread.run_sync(
            verify_password, secret, local.password_hash if local else None, limiter=self._hashing
        ):
            return None
        if admins_only and local is not None and not local.is_admin:
            raise LocalLoginRefused(
                f"{name!r} is a local account, and local logins are for admins only here "
                "(auth.local_login): log in through the directory or single sign-on"
            )
        return _user_account(local)

    async def _token_login(self, name: str, secret: str) -> Account | None:
        token_id, _, _ = secret.removeprefix(TOKEN_PREFIX).partition("_")
        if not token_id.isdigit() or len(token_id) > 18:
            return None
        async with self.db.read() as conn:
            token = await q.token_by_id(conn, int(token_id))
            user = await q.user_by_name(conn, name) if token and token.user == name else None
        if not secret_matches(secret, token.secret_digest if token else None):
            return None
        if token is None or user is None or user.disabled or not _unexpired(token.expires_at):
            return None
        return _token_account(user, token)

    async def token_used(self, account: Account, address: str) -> None:
        """Note when and from where a personal access token was last used."""
        if account.identity.token_id is not None:
            async with self.db.write() as conn:
                await q.token_used(conn, account.identity.token_id, address)

    async def account(self, name: str, token_id: int | None = None) -> Account | None:
        """The current state of a named account (or of its personal access token), or
        None if it is gone, disabled or expired."""
        async with self.db.read() as conn:
            if name.startswith(ROBOT_PREFIX):
                return _robot_account(await q.robot_by_name(conn, name))
            user = await q.user_by_name(conn, name)
            if token_id is None:
                return _user_account(user)
            token = await q.token_by_id(conn, token_id)
        if user is None or user.disabled or token is None or token.user != name:
            return None
        if not _unexpired(token.expires_at):
            return None
        return _token_account(user, token)

    # Authorization

    async def allowed(self, identity: Identity, namespace: str) -> frozenset[str]:
        """The repository actions `identity` may take in `namespace`."""
        if identity.admin or (self.mirror is not None and self.mirror.mirror_only):
            return self._actions(identity, namespace, None)
        user, robot = _names(identity)
        async with self.db.read() as conn:
            access = await q.namespace_access(conn, namespace, user, robot)
        return self._actions(identity, namespace, access)

    async def recheck(
        self, account: Account, namespace: str | None
    ) -> tuple[Identity, frozenset[str]] | None:
        """The account as it stands in the database now, and what it may do in
        `namespace`, in one query; None when it is gone, disabled or expired, or its
        credential is no longer the one it proved. Asked on every request that comes
        with a remembered login, so a revocation holds at once on every replica."""
        user, robot = _names(account.identity)
        token_id = account.identity.token_id
        async with self.db.read() as conn:
            state = await q.account_state(conn, namespace or "", user, robot, token_id)
        if state is None or state.disabled or credential_tag(state.secret) != account.credential:
            return None
        if not _unexpired(state.expires_at):
            return None
        identity = dataclasses.replace(account.identity, admin=state.admin)
        if not namespace:
            return identity, NOTHING
        return identity, self._actions(identity, namespace, state.access)

    def _actions(
        self, identity: Identity, namespace: str, access: q.NamespaceAccess | None
    ) -> frozenset[str]:
        """The actions granted by an account's access to a namespace (None: it has no
        row here, so it is mirrored, or nobody's), within its token's scopes."""
        if identity.admin:
            return EVERYTHING
        if access is None or (self.mirror is not None and self.mirror.mirror_only):
            return identity.limit(namespace, self._mirrored(identity))
        actions = set(ROLES.get(access.role or "", NOTHING))
        if access.robot_actions:
            actions.update(access.robot_actions.split(","))
        if access.public:
            actions.add(PULL)
        return identity.limit(namespace, frozenset(actions))

    async def refusal(self, identity: Identity, namespace: str, wanted: frozenset[str]) -> str:
        """Why `identity` may not do `wanted` in `namespace`, saying no more than it may
        see: to one who cannot pull there, a missing namespace and a private one it is
        no member of read the same."""
        user, robot = _names(identity)
        async with self.db.read() as conn:
            access = await q.namespace_access(conn, namespace, user, robot)
        held = self._actions(identity, namespace, access)
        asked = ", ".join(sorted(wanted - held))
        who = identity.name
        if identity.token_id is not None and not wanted <= identity.limit(namespace, wanted):
            return (
                f"the personal access token {who!r} logged in with does not allow {asked} "
                f"in {namespace!r}: make a token whose scopes include it"
            )
        if not held:
            return (
                f"namespace {namespace!r} does not exist, or {who!r} is not a member of it: "
                "an admin creates namespaces, and its owners add members"
            )
        may = f"may {', '.join(sorted(held))} in {namespace!r}, not {asked}"
        if robot is not None:
            return f"{who!r} {may}: a robot's grants are set when it is made; make another"
        if access is None or not access.role:
            return f"anyone {may}" if access else f"{namespace!r} is mirrored: anyone {may}"
        needed = next((role for role, can in ROLES.items() if wanted <= can), "owner")
        return (
            f"{who!r} is a {access.role} of {namespace!r} and {may}: that needs the role "
            f"{needed} or above; an owner of {namespace!r} can give it"
        )

    async def readable_namespaces(self, identity: Identity) -> set[str] | None:
        """The namespaces `identity` may pull from; None means all of them."""
        if identity.admin:
            return None
        mirrored = bool(self._mirrored(identity))
        if mirrored and self.mirror is not None and self.mirror.mirror_only:
            return None
        user, robot = _names(identity)
        async with self.db.read() as conn:
            readable = await q.readable_namespaces(conn, user, robot)
            if mirrored:
                readable |= await q.unowned_namespaces(conn)
        return {ns for ns in readable if identity.limit(ns, MIRRORED)}

    async def owned_namespaces(self, identity: Identity) -> set[str] | None:
        """The namespaces `identity` owns; None (all of them) for an admin."""
        if identity.admin:
            return None
        if identity.kind != "user" or identity.token_id is not None:
            return set()
        async with self.db.read() as conn:
            return await q.owned_namespaces(conn, identity.name)

    def _mirrored(self, identity: Identity) -> frozenset[str]:
        """What `identity` may do in a mirrored repository: pull, if it has an account or
        the mirror is open."""
        if self.mirror is None or not (self.mirror.open or not identity.anonymous):
            return NOTHING
        return MIRRORED

    async def role(self, identity: Identity, namespace: str) -> str | None:
        """`identity`'s role in `namespace` (the highest of its own and its groups');
        None for a robot, or a login with a personal access token, which never manage."""
        if identity.token_id is not None:
            return None
        user, _ = _names(identity)
        async with self.db.read() as conn:
            access = await q.namespace_access(conn, namespace, user, None)
        return access.role if access else None

    # Users

    async def add_user(self, name: str, password: str, *, admin: bool = False) -> None:
        """Create a user and their personal namespace, which they own."""
        check_user_name(name)
        check_password(password)
        hashed = await anyio.to_thread.run_sync(hash_password, password, limiter=self._hashing)
        async with self.db.write() as conn:
            user_id = await q.insert_user(conn, name, hashed, admin)
            if user_id is None:
                raise AccountExists(f"user {name!r} already exists")
            namespace_id = await q.insert_namespace(conn, name, public=False)
            if namespace_id is None:
                raise AccountExists(
                    f"a namespace named {name!r} already exists; a user's name is also their "
                    "personal namespace, so choose another name"
                )
            await q.set_member(conn, namespace_id, user_id, "owner")
            await events.record(
                conn, "user.create", namespace=name, detail={"user": name, "admin": admin}
            )

    async def set_password(self, name: str, password: str) -> None:
        check_password(password)
        hashed = await anyio.to_thread.run_sync(hash_password, password, limiter=self._hashing)
        await self._update_user(name, "user.password", password_hash=hashed)

    async def set_user(
        self, name: str, *, admin: bool | None = None, disabled: bool | None = None
    ) -> None:
        values = {
            key: value
            for key, value in (("is_admin", admin), ("disabled", disabled))
            if value is not None
        }
        if values:
            await self._update_user(name, "user.update", **values)

    async def remove_user(self, name: str) -> None:
        """Remove the account. Its personal namespace and repositories stay, for an admin
        to hand over or delete."""
        async with self.db.write() as conn:
            if not await q.delete_user(conn, name):
                raise AccountUnknown(f"no user named {name!r}")
            await events.record(conn, "user.delete", detail={"user": name})

    async def list_users(self) -> list[q.UserRow]:
        async with self.db.read() as conn:
            return list(await q.list_users(conn))

    async def ensure_admin(self, password: str | None) -> str | None:
        """On a first start, create `admin`. Returns the generated password, if one was
        made; None when an admin exists or `password` was given."""
        async with self.db.read() as conn:
            if await q.admin_exists(conn):
                return None
        generated = None if password else new_secret()
        try:
            await self.add_user("admin", password or generated or "", admin=True)
        except AccountExists:
            # Another replica won the race, or an `admin` user lost the flag: leave it be.
            return None
        return generated

    async def _update_user(self, name: str, action: str, **values: object) -> None:
        async with self.db.write() as conn:
            if not await q.update_user(conn, name, **values):
                raise AccountUnknown(f"no user named {name!r}")
            shown = {k: v for k, v in values.items() if k != "password_hash"}
            await events.record(conn, action, detail={"user": name, **shown})

    # Namespaces and members

    async def add_namespace(self, name: str, *, public: bool, owner: str | None = None) -> None:
        check_user_name(name)
        async with self.db.write() as conn:
            namespace_id = await q.insert_namespace(conn, name, public)
            if namespace_id is None:
                raise AccountExists(f"namespace {name!r} already exists")
            if owner is not None:
                await q.set_member(conn, namespace_id, await _user_id(conn, owner), "owner")
            await events.record(
                conn,
                "namespace.create",
                namespace=name,
                detail={"public": public, "owner": owner},
            )

    async def set_public(self, name: str, public: bool) -> None:
        async with self.db.write() as conn:
            if not await q.set_namespace_public(conn, name, public):
                raise AccountUnknown(f"no namespace named {name!r}")
            await events.record(conn, "namespace.update", namespace=name, detail={"public": public})

    async def remove_namespace(self, name: str) -> None:
        """Remove the namespace's members and robot grants. Its repositories stay; without
        a namespace only admins reach them."""
        async with self.db.write() as conn:
            if not await q.delete_namespace(conn, name):
                raise AccountUnknown(f"no namespace named {name!r}")
            # Group roles, remotes and keys name their namespace: one made later with this name
            # must not inherit them.
            await q.delete_group_roles(conn, namespace=name)
            await replication.remove_namespace_rules(conn, name)  # before the remotes they use
            await remotes.remove_all(conn, name)
            await trust.remove_all(conn, name)
            await events.record(conn, "namespace.delete", namespace=name)

    async def list_namespaces(self) -> list[tuple[str, bool, int]]:
        async with self.db.read() as conn:
            return await q.list_namespaces(conn)

    async def set_member(self, namespace: str, user: str, role: str) -> None:
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        async with self.db.write() as conn:
            namespace_id = await _namespace_id(conn, namespace, lock=True)
            if role != "owner":
                await _keep_an_owner(conn, namespace_id, namespace, user)
            await q.set_member(conn, namespace_id, await _user_id(conn, user), role)
            await events.record(
                conn, "member.set", namespace=namespace, detail={"user": user, "role": role}
            )

    async def remove_member(self, namespace: str, user: str) -> None:
        async with self.db.write() as conn:
            namespace_id = await _namespace_id(conn, namespace, lock=True)
            await _keep_an_owner(conn, namespace_id, namespace, user)
            removed = await q.remove_member(conn, namespace_id, await _user_id(conn, user))
            if removed:
                await events.record(
                    conn, "member.remove", namespace=namespace, detail={"user": user}
                )
        if not removed:
            raise AccountUnknown(f"{user!r} is not a member of {namespace!r}")

    async def list_members(self, namespace: str) -> list[tuple[str, str]]:
        async with self.db.read() as conn:
            return await q.list_members(conn, await _namespace_id(conn, namespace))

    # Robots

    async def add_robot(
        self,
        name: str,
        grants: dict[str, list[str]],
        expires_at: datetime | None = None,
        patterns: dict[str, list[str]] | None = None,
    ) -> str:
        """Create `robot$<name>` with actions per namespace, and (made by an admin) per
        namespace pattern; returns its secret, which is not kept and cannot be shown
        again."""
        if not _ROBOT_NAME.fullmatch(name) or len(name) > 100:
            raise AccountError(
                f"invalid robot name {name[:80]!r}: use lower-case letters, digits and . _ + - "
                "between them"
            )
        patterns = patterns or {}
        if not grants and not patterns:
            raise AccountError("a robot needs at least one namespace to act in")
        by_pattern = {
            check_pattern(glob): (like_pattern(glob), check_actions(actions))
            for glob, actions in patterns.items()
        }
        secret = new_secret()
        async with self.db.write() as conn:
            by_id = {
                await _namespace_id(conn, namespace): check_actions(actions)
                for namespace, actions in grants.items()
            }
            full_name = ROBOT_PREFIX + name
            digest = secret_digest(secret)
            made = await q.insert_robot(conn, full_name, digest, expires_at, by_id, by_pattern)
            if made is None:
                raise AccountExists(f"robot {full_name!r} already exists")
            detail = {
                "robot": full_name,
                "grants": {ns: check_actions(a).split(",") for ns, a in grants.items()},
                "patterns": {glob: actions.split(",") for glob, (_, actions) in by_pattern.items()},
                "expires_at": expires_at.isoformat() if expires_at else None,
            }
            if not grants:
                await events.record(conn, "robot.create", detail=detail)
            for namespace in sorted(grants):
                await events.record(conn, "robot.create", namespace=namespace, detail=detail)
        return secret

    async def remove_robot(self, name: str) -> None:
        async with self.db.write() as conn:
            if not await q.delete_robot(conn, name):
                raise AccountUnknown(f"no robot named {name!r}")
            # robot$<namespace>+<name>, as the API makes them
            namespace = name.removeprefix(ROBOT_PREFIX).partition("+")[0] if "+" in name else None
            await events.record(conn, "robot.delete", namespace=namespace, detail={"robot": name})

    async def list_robots(self, namespace: str | None = None) -> list[RobotInfo]:
        async with self.db.read() as conn:
            rows = await q.list_robots(conn, namespace)
        robots: dict[str, RobotInfo] = {}
        for name, expires_at, disabled, ns, actions in rows:
            info = robots.setdefault(name, RobotInfo(name, expires_at, disabled, {}))
            info.grants[ns] = actions.split(",")
        return list(robots.values())

    # Personal access tokens

    async def add_token(
        self,
        user: str,
        name: str,
        scopes: list[tuple[str, list[str]]],
        expires_at: datetime | None,
    ) -> str:
        """Make a personal access token for `user`; returns it, shown this once. Each
        scope is a namespace pattern and the actions the token allows there, within
        what the user may do."""
        if not _TOKEN_NAME.fullmatch(name):
            raise AccountError(
                f"invalid token name {name[:80]!r}: letters, digits, spaces and . _ -, at "
                "most 64 characters"
            )
        if not scopes:
            raise AccountError("a token needs at least one scope (a namespace pattern and actions)")
        stored = json.dumps(
            [[check_pattern(glob), check_actions(actions).split(",")] for glob, actions in scopes]
        )
        if expires_at is not None and not _unexpired(expires_at):
            raise AccountError("a token's expiry must be in the future")
        secret = new_secret()
        async with self.db.write() as conn:
            owner = await q.user_by_name(conn, user)
            if owner is None:
                raise AccountUnknown(f"no user named {user!r}")
            # The id is only known once the row exists; the row keeps the digest of the
            # whole token, id included, so it is written with a placeholder first.
            token_id = await q.insert_token(conn, owner.id, name, "", stored, expires_at)
            if token_id is None:
                raise AccountExists(f"{user!r} already has a token named {name!r}")
            token = f"{TOKEN_PREFIX}{token_id}_{secret}"
            await q.set_token_digest(conn, token_id, secret_digest(token))
            await events.record(
                conn,
                "token.create",
                detail={
                    "user": user,
                    "token": name,
                    "scopes": json.loads(stored),
                    "expires_at": expires_at.isoformat() if expires_at else None,
                },
            )
        return token

    async def list_tokens(self, user: str) -> list[TokenInfo]:
        async with self.db.read() as conn:
            rows = await q.list_tokens(conn, user)
        return [
            TokenInfo(
                row.name,
                [(glob, actions) for glob, actions in json.loads(row.scopes)],
                row.expires_at,
                row.created_at,
                row.last_used_at,
                row.last_used_from,
            )
            for row in rows
        ]

    async def remove_token(self, user: str, name: str) -> None:
        """Revoke at once: the next request with it, or with a token made from it, is
        refused (Basic logins are checked against the row on every request)."""
        async with self.db.write() as conn:
            if not await q.delete_token(conn, user, name):
                raise AccountUnknown(f"{user!r} has no token named {name!r}")
            await events.record(conn, "token.delete", detail={"user": user, "token": name})

    # Users from a directory or an OpenID provider, and their groups

    async def external_login(
        self,
        source: str,
        external_id: str,
        name: str,
        groups: frozenset[str],
        refresh: str | None = None,
    ) -> Account:
        """The account of a user whom `source` has just vouched for, made on their first
        login (with a personal namespace, as a local user's); their groups are set to
        `groups`. A name already held by another account is refused: a directory or
        provider must never log in as a local account, or as another source's user."""
        groups = frozenset(g for g in groups if _usable_group(g))
        # Read first: most logins find the account and its groups as they were, and
        # then take no write turn (SQLite has one writer for every push).
        async with self.db.read() as conn:
            user = await q.user_by_external_id(conn, source, external_id)
            held = frozenset(await q.user_groups(conn, user.name)) if user is not None else None
        if user is None or held != groups or refresh is not None:
            async with self.db.write() as conn:
                user = await q.user_by_external_id(conn, source, external_id)
                if user is None:
                    user = await self._make_external(conn, source, external_id, name)
                changed = await q.set_user_groups(conn, user.id, set(groups))
                if changed:
                    await events.record(
                        conn, "user.groups", detail={"user": user.name, "groups": sorted(groups)}
                    )
                    # A group may make the user an admin, or stop making them one.
                    user = await q.user_by_external_id(conn, source, external_id)
                    assert user is not None
                if refresh is not None:
                    await q.update_user(conn, user.name, external_refresh=refresh)
        assert user is not None
        account = _user_account(user)
        if account is None:
            raise Denied(message=f"account {name!r} is disabled here; ask an admin")
        return account

    async def _make_external(
        self, conn: AsyncConnection, source: str, external_id: str, name: str
    ) -> q.UserRow:
        try:
            check_user_name(name)
        except AccountError as exc:
            raise AccountConflict(
                f"the {source} account {external_id[:200]!r} is named {name[:80]!r}, which "
                f"cannot name an account here ({exc}); an admin can change the claim or "
                "attribute that names accounts"
            ) from None
        marker = f"!{source}:{new_secret()}"
        user_id = await q.insert_user(conn, name, marker, False, source, external_id)
        namespace_id = await q.insert_namespace(conn, name, public=False) if user_id else None
        if user_id is None or namespace_id is None:
            raise AccountConflict(
                f"the {source} account {external_id[:200]!r} would be named {name!r}, but "
                f"an account or namespace of that name already exists here; an admin must "
                "rename or remove it (accounts are never merged by name)"
            )
        await q.set_member(conn, namespace_id, user_id, "owner")
        await events.record(
            conn,
            "user.create",
            namespace=name,
            detail={"user": name, "source": source, "external_id": external_id[:512]},
        )
        made = await q.user_by_name(conn, name)
        assert made is not None
        return made

    async def external_refresh(self, name: str) -> str | None:
        """The sealed refresh token the user's OpenID provider last gave, if any."""
        async with self.db.read() as conn:
            return await q.external_refresh(conn, name)

    async def external_user(self, name: str) -> q.UserRow | None:
        """The user named `name` if their identity comes from another source."""
        async with self.db.read() as conn:
            user = await q.user_by_name(conn, name)
        return user if user is not None and user.source != "local" else None

    async def roles_of(self, user: str) -> tuple[list[str], list[tuple[str, str, str | None]]]:
        """A user's groups, and where each of their roles comes from."""
        async with self.db.read() as conn:
            return await q.user_groups(conn, user), await q.roles_of(conn, user)

    async def list_group_roles(self, namespace: str | None = None) -> list[GroupRoleRow]:
        async with self.db.read() as conn:
            return await q.list_group_roles(conn, namespace)

    async def set_group_role(
        self, source: str, group: str, namespace: str, role: str, *, origin: str = "api"
    ) -> None:
        """Members of `group` (at `source`) hold `role` in `namespace` ('' and admin:
        admin everywhere), from their next login or token request."""
        source, group = check_group(source, group)
        if role == q.ADMIN_ROLE:
            if namespace:
                raise AccountError("admin is held everywhere; give no namespace")
        elif role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)} or admin; got {role!r}")
        async with self.db.write() as conn:
            if namespace:
                await _namespace_id(conn, namespace)
            await q.put_group_role(conn, source, group, namespace, role, origin)
            await events.record(
                conn,
                "group_role.set",
                namespace=namespace or None,
                detail={"source": source, "group": group, "role": role},
            )

    async def remove_group_role(self, role_id: int, namespace: str | None = None) -> None:
        """Remove a group role (one in `namespace`, when given: an owner's). One from the
        settings cannot be: it would come back at the next start."""
        async with self.db.write() as conn:
            found = await q.group_role(conn, role_id)
            if found is None or (namespace is not None and found.namespace != namespace):
                where = f" in {namespace!r}" if namespace is not None else ""
                raise AccountUnknown(f"no group role {role_id}{where}")
            if found.origin == "config":
                raise AccountConflict(
                    f"group role {role_id} comes from the settings (auth.group_roles): "
                    "change it there"
                )
            await q.delete_group_role(conn, role_id)
            await events.record(
                conn,
                "group_role.remove",
                namespace=found.namespace or None,
                detail={"source": found.source, "group": found.group, "role": found.role},
            )

    async def configure_group_roles(self, mappings: list[tuple[str, str, str, str]]) -> None:
        """Make the settings' group roles (source, group, namespace, role) the ones of
        origin config: at every start, in one transaction, so replicas starting together
        with the same settings leave the same rows."""
        async with self.db.write() as conn:
            await q.delete_group_roles(conn, origin="config")
            for source, group, namespace, role in mappings:
                source, group = check_group(source, group)
                await q.put_group_role(conn, source, group, namespace, role, "config")


def check_pattern(pattern: str) -> str:
    if not _PATTERN.fullmatch(pattern):
        raise AccountError(
            f"invalid namespace pattern {pattern[:80]!r}: a namespace name, with * for any "
            "characters and ? for one"
        )
    return pattern


def split_permissions(
    entries: Iterable[tuple[str, list[str]]],
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """A robot's permissions (target, actions) as add_robot takes them: by namespace
    name, and by pattern (a target with * or ?); a target named twice gets both's."""
    grants: dict[str, list[str]] = {}
    patterns: dict[str, list[str]] = {}
    for target, actions in entries:
        into = patterns if any(c in target for c in "*?") else grants
        into.setdefault(target, []).extend(actions)
    return grants, patterns


def like_pattern(glob: str) -> str:
    """A checked glob as a LIKE pattern (escape character backslash)."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def check_group(source: str, group: str) -> tuple[str, str]:
    """A group as group roles name it: an LDAP group by its DN in lower case."""
    if source not in GROUP_SOURCES:
        raise AccountError(f"source must be ldap or oidc; got {source[:20]!r}")
    group = group.strip()
    if not _usable_group(group):
        raise AccountError("a group name of 1 to 512 printable characters is needed")
    return source, group.lower() if source == "ldap" else group


def _usable_group(group: str) -> bool:
    """A group a source may give and a mapping may name: others (empty, too long, with
    control characters) are left out of a user's groups, as no mapping can match them."""
    return 0 < len(group) <= 512 and group.isprintable()


def _limits(stored: str) -> Limits:
    return tuple((glob, frozenset(actions)) for glob, actions in json.loads(stored))


def _names(identity: Identity) -> tuple[str | None, str | None]:
    if identity.kind == "user":
        return identity.name, None
    if identity.kind == "robot":
        return None, identity.name
    return None, None


def _user_account(user: q.UserRow | None) -> Account | None:
    if user is None or user.disabled:
        return None
    identity = Identity(user.name, "user", user.is_admin or user.group_admin)
    tag = credential_tag(user.password_hash)
    return Account(identity, tag, user.source, user.source, user.external_id)


def _token_account(user: q.UserRow, token: q.TokenRow) -> Account:
    identity = Identity(user.name, "user", limits=_limits(token.scopes), token_id=token.id)
    tag = credential_tag(token.secret_digest)
    return Account(identity, tag, "token", user.source, user.external_id)


def _robot_account(robot: q.RobotRow | None) -> Account | None:
    if robot is None or not _robot_valid(robot):
        return None
    return Account(Identity(robot.name, "robot"), credential_tag(robot.secret_digest), "robot")


def _robot_valid(robot: q.RobotRow) -> bool:
    return not robot.disabled and _unexpired(robot.expires_at)


def _unexpired(expires: datetime | None) -> bool:
    if expires is None:
        return True
    # SQLite hands back naive datetimes; everything is stored in UTC.
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return expires > datetime.now(UTC)


async def _user_id(conn: AsyncConnection, name: str) -> int:
    user = await q.user_by_name(conn, name)
    if user is None:
        raise AccountUnknown(f"no user named {name!r}")
    return user.id


async def _namespace_id(conn: AsyncConnection, name: str, *, lock: bool = False) -> int:
    found = await q.namespace_id(conn, name, lock=lock)
    if found is None:
        raise AccountUnknown(f"no namespace named {name!r}")
    return found


async def _keep_an_owner(
    conn: AsyncConnection, namespace_id: int, namespace: str, user: str
) -> None:
    """Refuse to take the owner role from `user` (removed, or given another role) when
    no other member holds it. Safe against two owners demoting each other at once: both
    hold the namespace's row (`lock`), so the second reads the members after the first
    commits (SQLite runs one write at a time)."""
    roles = dict(await q.list_members(conn, namespace_id))
    others = [name for name, role in roles.items() if role == "owner" and name != user]
    if roles.get(user) == "owner" and not others:
        raise LastOwner(
            f"{user!r} is the last owner of {namespace!r}: make another member an owner "
            "first (a namespace without an owner is managed by admins alone)"
        )


async def deny_unless_owner(accounts: Accounts, identity: Identity, namespace: str) -> None:
    """DENIED unless `identity` is an admin or an owner of `namespace` (/api/v1/ and the
    console alike)."""
    if identity.admin or await accounts.role(identity, namespace) == "owner":
        return
    raise Denied(message=f"only an owner of {namespace!r} or an admin may do this")
