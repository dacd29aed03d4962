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

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.auth.identity import ROBOT_PREFIX, Identity
from registry.auth.passwords import (
    credential_tag,
    hash_password,
    new_secret,
    secret_digest,
    secret_matches,
    verify_password,
)
from registry.auth.scopes import DELETE, PULL, PUSH, REPOSITORY_ACTIONS
from registry.config import MirrorSettings
from registry.errors import Denied
from registry.metadata import accounts as q
from registry.metadata import events
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
    """An authenticated identity and the fingerprint of the credential it proved."""

    identity: Identity
    credential: str


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

    async def authenticate(self, name: str, secret: str) -> Account | None:
        """The account if `secret` is its password (users) or secret (robots)."""
        if name.startswith(ROBOT_PREFIX):
            async with self.db.read() as conn:
                robot = await q.robot_by_name(conn, name)
            if not secret_matches(secret, robot.secret_digest if robot else None):
                return None
            return _robot_account(robot)
        async with self.db.read() as conn:
            user = await q.user_by_name(conn, name)
        # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
        if not await anyio.to_thread.run_sync(
            verify_password, secret, user.password_hash if user else None, limiter=self._hashing
        ):
            return None
        return _user_account(user)

    async def account(self, name: str) -> Account | None:
        """The current state of a named account, or None if it is gone, disabled or expired."""
        async with self.db.read() as conn:
            if name.startswith(ROBOT_PREFIX):
                return _robot_account(await q.robot_by_name(conn, name))
            return _user_account(await q.user_by_name(conn, name))

    # Authorization

    async def allowed(self, identity: Identity, namespace: str) -> frozenset[str]:
        """The repository actions `identity` may take in `namespace`."""
        if identity.admin or (self.mirror is not None and self.mirror.mirror_only):
            return self._actions(identity, None)
        user, robot = _names(identity)
        async with self.db.read() as conn:
            access = await q.namespace_access(conn, namespace, user, robot)
        return self._actions(identity, access)

    async def recheck(
        self, account: Account, namespace: str | None
    ) -> tuple[Identity, frozenset[str]] | None:
        """The account as it stands in the database now, and what it may do in
        `namespace`, in one query; None when it is gone, disabled or expired, or its
        credential is no longer the one it proved. Asked on every request that comes
        with a remembered login, so a revocation holds at once on every replica."""
        user, robot = _names(account.identity)
        async with self.db.read() as conn:
            state = await q.account_state(conn, namespace or "", user, robot)
        if state is None or state.disabled or credential_tag(state.secret) != account.credential:
            return None
        if robot is not None and not _unexpired(state.expires_at):
            return None
        identity = Identity(account.identity.name, account.identity.kind, state.admin)
        return identity, self._actions(identity, state.access) if namespace else NOTHING

    def _actions(self, identity: Identity, access: q.NamespaceAccess | None) -> frozenset[str]:
        """The actions granted by an account's access to a namespace (None: it has no
        row here, so it is mirrored, or nobody's)."""
        if identity.admin:
            return EVERYTHING
        if access is None or (self.mirror is not None and self.mirror.mirror_only):
            return self._mirrored(identity)
        actions = set(ROLES.get(access.role or "", NOTHING))
        if access.robot_actions:
            actions.update(access.robot_actions.split(","))
        if access.public:
            actions.add(PULL)
        return frozenset(actions)

    async def refusal(self, identity: Identity, namespace: str, wanted: frozenset[str]) -> str:
        """Why `identity` may not do `wanted` in `namespace`, saying no more than it may
        see: to one who cannot pull there, a missing namespace and a private one it is
        no member of read the same."""
        user, robot = _names(identity)
        async with self.db.read() as conn:
            access = await q.namespace_access(conn, namespace, user, robot)
        held = self._actions(identity, access)
        asked = ", ".join(sorted(wanted - held))
        who = identity.name
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
        return readable

    async def owned_namespaces(self, identity: Identity) -> set[str] | None:
        """The namespaces `identity` owns; None (all of them) for an admin."""
        if identity.admin:
            return None
        if identity.kind != "user":
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
        self, name: str, grants: dict[str, list[str]], expires_at: datetime | None = None
    ) -> str:
        """Create `robot$<name>` with actions per namespace; returns its secret, which is
        not kept and cannot be shown again."""
        if not _ROBOT_NAME.fullmatch(name) or len(name) > 100:
            raise AccountError(
                f"invalid robot name {name[:80]!r}: use lower-case letters, digits and . _ + - "
                "between them"
            )
        if not grants:
            raise AccountError("a robot needs at least one namespace to act in")
        secret = new_secret()
        async with self.db.write() as conn:
            by_id = {
                await _namespace_id(conn, namespace): check_actions(actions)
                for namespace, actions in grants.items()
            }
            full_name = ROBOT_PREFIX + name
            digest = secret_digest(secret)
            if await q.insert_robot(conn, full_name, digest, expires_at, by_id) is None:
                raise AccountExists(f"robot {full_name!r} already exists")
            detail = {
                "robot": full_name,
                "grants": {ns: check_actions(a).split(",") for ns, a in grants.items()},
                "expires_at": expires_at.isoformat() if expires_at else None,
            }
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


def _names(identity: Identity) -> tuple[str | None, str | None]:
    if identity.kind == "user":
        return identity.name, None
    if identity.kind == "robot":
        return None, identity.name
    return None, None


def _user_account(user: q.UserRow | None) -> Account | None:
    if user is None or user.disabled:
        return None
    identity = Identity(user.name, "user", user.is_admin)
    return Account(identity, credential_tag(user.password_hash))


def _robot_account(robot: q.RobotRow | None) -> Account | None:
    if robot is None or not _robot_valid(robot):
        return None
    return Account(Identity(robot.name, "robot"), credential_tag(robot.secret_digest))


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
