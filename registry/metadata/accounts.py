"""Users, namespaces, members and robot accounts. Each query takes an open connection
and the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, false, func, null, select, union, update
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import (
    LoginFailure,
    Member,
    Namespace,
    Repository,
    Robot,
    RobotGrant,
    User,
    now,
)
from registry.metadata.statements import Statement, dialect_insert

# The namespace a push goes into, made by its first push (services/manifests.py): its id
# if this made it, nothing if it was there (and no id of the sequence spent).
ADD_NAMESPACE = Statement(
    "add_namespace",
    "INSERT INTO namespaces (name, public, created_at) SELECT :namespace, false, :now "
    "WHERE NOT EXISTS (SELECT 1 FROM namespaces WHERE name = :namespace) "
    "ON CONFLICT DO NOTHING RETURNING id",
)
ADD_OWNER = Statement(
    "add_owner",
    "INSERT INTO members (namespace_id, user_id, role) "
    "SELECT :namespace_id, id, 'owner' FROM users WHERE name = :user",
)


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    name: str
    password_hash: str
    is_admin: bool
    disabled: bool


@dataclass(frozen=True, slots=True)
class RobotRow:
    id: int
    name: str
    secret_digest: str
    disabled: bool
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class NamespaceAccess:
    """What one account holds in one namespace."""

    public: bool
    role: str | None
    robot_actions: str | None


# Users


async def user_by_name(conn: AsyncConnection, name: str) -> UserRow | None:
    row = (
        await conn.execute(
            select(User.id, User.name, User.password_hash, User.is_admin, User.disabled).where(
                User.name == name
            )
        )
    ).first()
    return UserRow(*row) if row else None


async def insert_user(
    conn: AsyncConnection, name: str, password_hash: str, admin: bool
) -> int | None:
    """The new user's id, or None if the name is taken."""
    result = await conn.execute(
        dialect_insert(conn, User)
        .values(
            name=name, password_hash=password_hash, is_admin=admin, disabled=False, created_at=now()
        )
        .on_conflict_do_nothing()
        .returning(User.id)
    )
    return result.scalar()


async def update_user(conn: AsyncConnection, name: str, **values: object) -> bool:
    result = await conn.execute(update(User).where(User.name == name).values(**values))
    return result.rowcount > 0


async def delete_user(conn: AsyncConnection, name: str) -> bool:
    result = await conn.execute(delete(User).where(User.name == name))
    return result.rowcount > 0


async def list_users(conn: AsyncConnection) -> Sequence[UserRow]:
    rows = await conn.execute(
        select(User.id, User.name, User.password_hash, User.is_admin, User.disabled).order_by(
            User.name
        )
    )
    return [UserRow(*row) for row in rows]


async def admin_exists(conn: AsyncConnection) -> bool:
    return bool(await conn.scalar(select(exists().where(User.is_admin.is_(True)))))


# Namespaces and members


async def namespace_id(conn: AsyncConnection, name: str, *, lock: bool = False) -> int | None:
    """The namespace's id; with `lock`, its row held until the transaction ends
    (PostgreSQL: SQLite's writes take turns already)."""
    query = select(Namespace.id).where(Namespace.name == name)
    return await conn.scalar(query.with_for_update() if lock else query)


async def insert_namespace(conn: AsyncConnection, name: str, public: bool) -> int | None:
    """The new namespace's id, or None if the name is taken."""
    result = await conn.execute(
        dialect_insert(conn, Namespace)
        .values(name=name, public=public, created_at=now())
        .on_conflict_do_nothing()
        .returning(Namespace.id)
    )
    return result.scalar()


async def set_namespace_public(conn: AsyncConnection, name: str, public: bool) -> bool:
    result = await conn.execute(
        update(Namespace).where(Namespace.name == name).values(public=public)
    )
    return result.rowcount > 0


async def delete_namespace(conn: AsyncConnection, name: str) -> bool:
    result = await conn.execute(delete(Namespace).where(Namespace.name == name))
    return result.rowcount > 0


async def list_namespaces(conn: AsyncConnection) -> list[tuple[str, bool, int]]:
    """(name, public, member count) for every namespace."""
    members = (
        select(func.count())
        .select_from(Member)
        .where(Member.namespace_id == Namespace.id)
        .scalar_subquery()
    )
    rows = await conn.execute(
        select(Namespace.name, Namespace.public, members).order_by(Namespace.name)
    )
    return [(name, bool(public), int(count)) for name, public, count in rows]


async def set_member(conn: AsyncConnection, namespace_id: int, user_id: int, role: str) -> None:
    statement = dialect_insert(conn, Member).values(
        namespace_id=namespace_id, user_id=user_id, role=role
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[Member.namespace_id, Member.user_id], set_={"role": role}
        )
    )


async def remove_member(conn: AsyncConnection, namespace_id: int, user_id: int) -> bool:
    result = await conn.execute(
        delete(Member).where(Member.namespace_id == namespace_id, Member.user_id == user_id)
    )
    return result.rowcount > 0


async def list_members(conn: AsyncConnection, namespace_id: int) -> list[tuple[str, str]]:
    rows = await conn.execute(
        select(User.name, Member.role)
        .join(Member, Member.user_id == User.id)
        .where(Member.namespace_id == namespace_id)
        .order_by(User.name)
    )
    return [(name, role) for name, role in rows]


async def namespace_access(
    conn: AsyncConnection, namespace: str, user: str | None, robot: str | None
) -> NamespaceAccess | None:
    """One round trip: the namespace's visibility, the user's role and the robot's grant."""
    role = (
        select(Member.role)
        .join(User, User.id == Member.user_id)
        .where(Member.namespace_id == Namespace.id, User.name == user)
        .scalar_subquery()
    )
    grant = (
        select(RobotGrant.actions)
        .join(Robot, Robot.id == RobotGrant.robot_id)
        .where(RobotGrant.namespace_id == Namespace.id, Robot.name == robot)
        .scalar_subquery()
    )
    row = (
        await conn.execute(select(Namespace.public, role, grant).where(Namespace.name == namespace))
    ).first()
    return NamespaceAccess(bool(row[0]), row[1], row[2]) if row else None


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account's row as it stands, and what it holds in one namespace (None when the
    namespace has no row)."""

    secret: str  # the password hash of a user, the secret digest of a robot
    disabled: bool
    admin: bool
    expires_at: datetime | None
    access: NamespaceAccess | None


async def account_state(
    conn: AsyncConnection, namespace: str, user: str | None, robot: str | None
) -> AccountState | None:
    """One round trip: the account's row (user or robot) and its access in `namespace`;
    None when the account does not exist."""
    public = select(Namespace.public).where(Namespace.name == namespace).scalar_subquery()
    if user is not None:
        role = (
            select(Member.role)
            .join(Namespace, Namespace.id == Member.namespace_id)
            .where(Namespace.name == namespace, Member.user_id == User.id)
            .scalar_subquery()
        )
        query = select(
            User.password_hash, User.disabled, User.is_admin, null(), public, role, null()
        ).where(User.name == user)
    elif robot is not None:
        grant = (
            select(RobotGrant.actions)
            .join(Namespace, Namespace.id == RobotGrant.namespace_id)
            .where(Namespace.name == namespace, RobotGrant.robot_id == Robot.id)
            .scalar_subquery()
        )
        query = select(
            Robot.secret_digest, Robot.disabled, false(), Robot.expires_at, public, null(), grant
        ).where(Robot.name == robot)
    else:
        return None
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    secret, disabled, admin, expires_at, is_public, role, actions = row
    access = None if is_public is None else NamespaceAccess(bool(is_public), role, actions)
    return AccountState(secret, bool(disabled), bool(admin), expires_at, access)


async def readable_namespaces(
    conn: AsyncConnection, user: str | None, robot: str | None
) -> set[str]:
    """Namespaces an account may pull from: the public ones and those it holds a role or
    a pull grant in."""
    parts = [select(Namespace.name).where(Namespace.public.is_(True))]
    if user is not None:
        parts.append(
            select(Namespace.name)
            .join(Member, Member.namespace_id == Namespace.id)
            .join(User, User.id == Member.user_id)
            .where(User.name == user)
        )
    if robot is not None:
        parts.append(
            select(Namespace.name)
            .join(RobotGrant, RobotGrant.namespace_id == Namespace.id)
            .join(Robot, Robot.id == RobotGrant.robot_id)
            .where(Robot.name == robot, RobotGrant.actions.contains("pull"))
        )
    return set((await conn.scalars(union(*parts))).all())


async def owned_namespaces(conn: AsyncConnection, user: str) -> set[str]:
    rows = await conn.scalars(
        select(Namespace.name)
        .join(Member, Member.namespace_id == Namespace.id)
        .join(User, User.id == Member.user_id)
        .where(User.name == user, Member.role == "owner")
    )
    return set(rows)


async def unowned_namespaces(conn: AsyncConnection) -> set[str]:
    """Namespaces of repositories that have no namespace row (a mirror's, or pushed while
    auth was off)."""
    owned = select(Namespace.name)
    rows = await conn.scalars(
        select(Repository.namespace).where(Repository.namespace.not_in(owned)).distinct()
    )
    return set(rows.all())


# Robots


async def robot_by_name(conn: AsyncConnection, name: str) -> RobotRow | None:
    row = (
        await conn.execute(
            select(
                Robot.id, Robot.name, Robot.secret_digest, Robot.disabled, Robot.expires_at
            ).where(Robot.name == name)
        )
    ).first()
    return RobotRow(*row) if row else None


async def insert_robot(
    conn: AsyncConnection,
    name: str,
    secret_digest: str,
    expires_at: datetime | None,
    grants: dict[int, str],
) -> int | None:
    """The new robot's id, or None if the name is taken."""
    result = await conn.execute(
        dialect_insert(conn, Robot)
        .values(
            name=name,
            secret_digest=secret_digest,
            disabled=False,
            expires_at=expires_at,
            created_at=now(),
        )
        .on_conflict_do_nothing()
        .returning(Robot.id)
    )
    robot_id = result.scalar()
    if robot_id is not None and grants:
        await conn.execute(
            dialect_insert(conn, RobotGrant),
            [
                {"robot_id": robot_id, "namespace_id": ns, "actions": actions}
                for ns, actions in grants.items()
            ],
        )
    return robot_id


async def delete_robot(conn: AsyncConnection, name: str) -> bool:
    result = await conn.execute(delete(Robot).where(Robot.name == name))
    return result.rowcount > 0


async def list_robots(
    conn: AsyncConnection, namespace: str | None = None
) -> list[tuple[str, datetime | None, bool, str, str]]:
    """(name, expires_at, disabled, namespace, actions), one row per grant."""
    query = (
        select(Robot.name, Robot.expires_at, Robot.disabled, Namespace.name, RobotGrant.actions)
        .join(RobotGrant, RobotGrant.robot_id == Robot.id)
        .join(Namespace, Namespace.id == RobotGrant.namespace_id)
        .order_by(Robot.name, Namespace.name)
    )
    if namespace is not None:
        query = query.where(Namespace.name == namespace)
    return [tuple(row) for row in await conn.execute(query)]  # type: ignore[misc]


# Failed logins


async def login_failures(
    conn: AsyncConnection, account: str, client: str
) -> tuple[datetime, int] | None:
    row = (
        await conn.execute(
            select(LoginFailure.first_at, LoginFailure.count).where(
                LoginFailure.account == account, LoginFailure.client == client
            )
        )
    ).first()
    return (row[0], row[1]) if row else None


async def count_login_failure(
    conn: AsyncConnection, account: str, client: str, window_start: datetime
) -> None:
    """Count one failure; failures from before `window_start` no longer count (for this
    pair, or any other: expired rows are swept here)."""
    await conn.execute(delete(LoginFailure).where(LoginFailure.first_at < window_start))
    statement = dialect_insert(conn, LoginFailure).values(
        account=account, client=client, first_at=now(), count=1
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[LoginFailure.account, LoginFailure.client],
            set_={"count": LoginFailure.count + 1},
        )
    )


async def clear_login_failures(conn: AsyncConnection, account: str, client: str) -> None:
    await conn.execute(
        delete(LoginFailure).where(LoginFailure.account == account, LoginFailure.client == client)
    )
