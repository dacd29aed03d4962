"""Users, namespaces, members and robot accounts. Each query takes an open connection
and the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    exists,
    false,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    union,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import (
    GroupRole,
    LoginFailure,
    Member,
    Namespace,
    PersonalToken,
    Repository,
    Robot,
    RobotGrant,
    RobotPattern,
    User,
    UserGroup,
    now,
)
from registry.metadata.statements import Statement, dialect_insert, insert_new

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


# Namespace roles from the least to the most they allow.
ROLE_RANK = {"guest": 1, "developer": 2, "maintainer": 3, "owner": 4}
# A group role with no namespace: admin everywhere.
ADMIN_ROLE = "admin"


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    name: str
    password_hash: str
    is_admin: bool
    disabled: bool
    source: str
    external_id: str | None
    # Admin through a group role (from the user's source), not the user's own flag.
    group_admin: bool


@dataclass(frozen=True, slots=True)
class RobotRow:
    id: int
    name: str
    secret_digest: str
    disabled: bool
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class NamespaceAccess:
    """What one account holds in one namespace: the highest of its roles (as a member
    and through its groups), and a robot's actions (by name and by pattern)."""

    public: bool
    role: str | None
    robot_actions: str | None


def _access(
    public: object,
    role: str | None,
    group_roles: str | None,
    grant: str | None,
    pattern_actions: str | None,
) -> NamespaceAccess:
    """NamespaceAccess from the query's columns; group roles and pattern actions come
    comma-joined from several rows."""
    held = [r for r in f"{role or ''},{group_roles or ''}".split(",") if r in ROLE_RANK]
    best = max(held, key=ROLE_RANK.__getitem__) if held else None
    actions = {a for a in f"{grant or ''},{pattern_actions or ''}".split(",") if a}
    return NamespaceAccess(bool(public), best, ",".join(sorted(actions)) or None)


def _joined(conn: AsyncConnection, column: Any) -> ColumnElement[str]:
    """The values of `column` over a group's rows, joined by commas."""
    if conn.dialect.name == "postgresql":
        return func.string_agg(column, literal_column("','"))
    return func.group_concat(column)


def _through_groups() -> tuple[type[GroupRole], ColumnElement[bool]]:
    """The join from a user's groups to the roles they hold (from the user's source)."""
    return GroupRole, and_(
        GroupRole.group_name == UserGroup.group_name, GroupRole.source == User.source
    )


def _group_roles(conn: AsyncConnection, namespace: str, user: str | None = None) -> Any:
    """The roles the user's groups hold in `namespace`, comma-joined: the user of the
    outer query, or the one named `user`."""
    query = select(_joined(conn, GroupRole.role))
    if user is None:
        query = query.select_from(UserGroup).where(UserGroup.user_id == User.id)
    else:
        query = (
            query.select_from(User)
            .join(UserGroup, UserGroup.user_id == User.id)
            .where(User.name == user)
        )
    return query.join(*_through_groups()).where(GroupRole.namespace == namespace).scalar_subquery()


def _group_admin() -> ColumnElement[bool]:
    """Whether a group of the user in the outer query holds the admin role."""
    return exists(
        select(1)
        .select_from(UserGroup)
        .join(*_through_groups())
        .where(
            UserGroup.user_id == User.id,
            GroupRole.namespace == "",
            GroupRole.role == ADMIN_ROLE,
        )
    )


def _pattern_actions(conn: AsyncConnection, namespace: str, robot: str | None = None) -> Any:
    """The actions of every pattern of the robot (of the outer query, or named `robot`)
    that `namespace` matches, comma-joined."""
    query = select(_joined(conn, RobotPattern.actions)).where(
        RobotPattern.robot_id == Robot.id,
        literal(namespace).like(RobotPattern.like, escape="\\"),
    )
    if robot is not None:
        query = query.where(Robot.name == robot)
    return query.scalar_subquery()


# Users


_USER_COLUMNS = (
    User.id,
    User.name,
    User.password_hash,
    User.is_admin,
    User.disabled,
    User.source,
    User.external_id,
)


async def user_by_name(conn: AsyncConnection, name: str) -> UserRow | None:
    row = (
        await conn.execute(select(*_USER_COLUMNS, _group_admin()).where(User.name == name))
    ).first()
    return UserRow(*row) if row else None


async def external_refresh(conn: AsyncConnection, name: str) -> str | None:
    return await conn.scalar(select(User.external_refresh).where(User.name == name))


async def user_by_external_id(
    conn: AsyncConnection, source: str, external_id: str
) -> UserRow | None:
    row = (
        await conn.execute(
            select(*_USER_COLUMNS, _group_admin()).where(
                User.source == source, User.external_id == external_id
            )
        )
    ).first()
    return UserRow(*row) if row else None


async def insert_user(
    conn: AsyncConnection,
    name: str,
    password_hash: str,
    admin: bool,
    source: str = "local",
    external_id: str | None = None,
) -> int | None:
    """The new user's id, or None if the name (or the external id) is taken."""
    return await insert_new(
        conn,
        User,
        name=name,
        password_hash=password_hash,
        is_admin=admin,
        disabled=False,
        created_at=now(),
        source=source,
        external_id=external_id,
    )


async def update_user(conn: AsyncConnection, name: str, **values: object) -> bool:
    result = await conn.execute(update(User).where(User.name == name).values(**values))
    return result.rowcount > 0


async def delete_user(conn: AsyncConnection, name: str) -> bool:
    result = await conn.execute(delete(User).where(User.name == name))
    return result.rowcount > 0


async def list_users(conn: AsyncConnection) -> Sequence[UserRow]:
    rows = await conn.execute(select(*_USER_COLUMNS, _group_admin()).order_by(User.name))
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
    return await insert_new(conn, Namespace, name=name, public=public, created_at=now())


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
    """One round trip: the namespace's visibility, the user's roles (as a member and
    through groups) and the robot's grants (by name and by pattern)."""
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
    groups = _group_roles(conn, namespace, user) if user is not None else null()
    patterns = _pattern_actions(conn, namespace, robot) if robot is not None else null()
    row = (
        await conn.execute(
            select(Namespace.public, role, groups, grant, patterns).where(
                Namespace.name == namespace
            )
        )
    ).first()
    return _access(*row) if row else None


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
    conn: AsyncConnection,
    namespace: str,
    user: str | None,
    robot: str | None,
    token_id: int | None = None,
) -> AccountState | None:
    """One round trip: the account's row (a user, a user's personal access token, or a
    robot) and its access in `namespace`; None when the account or token does not
    exist."""
    public = select(Namespace.public).where(Namespace.name == namespace).scalar_subquery()
    if user is not None:
        role = (
            select(Member.role)
            .join(Namespace, Namespace.id == Member.namespace_id)
            .where(Namespace.name == namespace, Member.user_id == User.id)
            .scalar_subquery()
        )
        held = (public, role, _group_roles(conn, namespace), null(), null())
        if token_id is None:
            query = select(
                User.password_hash,
                User.disabled,
                or_(User.is_admin, _group_admin()),
                null(),
                *held,
            ).where(User.name == user)
        else:
            query = (
                select(
                    PersonalToken.secret_digest,
                    User.disabled,
                    false(),
                    PersonalToken.expires_at,
                    *held,
                )
                .join(PersonalToken, PersonalToken.user_id == User.id)
                .where(User.name == user, PersonalToken.id == token_id)
            )
    elif robot is not None:
        grant = (
            select(RobotGrant.actions)
            .join(Namespace, Namespace.id == RobotGrant.namespace_id)
            .where(Namespace.name == namespace, RobotGrant.robot_id == Robot.id)
            .scalar_subquery()
        )
        query = select(
            Robot.secret_digest,
            Robot.disabled,
            false(),
            Robot.expires_at,
            public,
            null(),
            null(),
            grant,
            _pattern_actions(conn, namespace),
        ).where(Robot.name == robot)
    else:
        return None
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    secret, disabled, admin, expires_at, is_public, *columns = row
    access = None if is_public is None else _access(is_public, *columns)
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
        parts.append(_namespaces_through_groups(user))
    if robot is not None:
        parts.append(
            select(Namespace.name)
            .join(RobotGrant, RobotGrant.namespace_id == Namespace.id)
            .join(Robot, Robot.id == RobotGrant.robot_id)
            .where(Robot.name == robot, RobotGrant.actions.contains("pull"))
        )
        parts.append(
            select(Namespace.name)
            .join(RobotPattern, Namespace.name.like(RobotPattern.like, escape="\\"))
            .join(Robot, Robot.id == RobotPattern.robot_id)
            .where(Robot.name == robot, RobotPattern.actions.contains("pull"))
        )
    return set((await conn.scalars(union(*parts))).all())


def _namespaces_through_groups(user: str, *roles: str) -> Any:
    """The namespaces where the named user's groups hold a role (one of `roles`)."""
    query = (
        select(Namespace.name)
        .join(GroupRole, GroupRole.namespace == Namespace.name)
        .join(UserGroup, UserGroup.group_name == GroupRole.group_name)
        .join(User, and_(User.id == UserGroup.user_id, User.source == GroupRole.source))
        .where(User.name == user)
    )
    return query.where(GroupRole.role.in_(roles)) if roles else query


async def owned_namespaces(conn: AsyncConnection, user: str) -> set[str]:
    direct = (
        select(Namespace.name)
        .join(Member, Member.namespace_id == Namespace.id)
        .join(User, User.id == Member.user_id)
        .where(User.name == user, Member.role == "owner")
    )
    rows = await conn.scalars(union(direct, _namespaces_through_groups(user, "owner")))
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
    patterns: dict[str, tuple[str, str]] | None = None,
) -> int | None:
    """The new robot's id, or None if the name is taken. `grants`: actions by namespace
    id; `patterns`: (LIKE pattern, actions) by glob."""
    robot_id = await insert_new(
        conn,
        Robot,
        name=name,
        secret_digest=secret_digest,
        disabled=False,
        expires_at=expires_at,
        created_at=now(),
    )
    if robot_id is not None and grants:
        await conn.execute(
            dialect_insert(conn, RobotGrant),
            [
                {"robot_id": robot_id, "namespace_id": ns, "actions": actions}
                for ns, actions in grants.items()
            ],
        )
    if robot_id is not None and patterns:
        await conn.execute(
            dialect_insert(conn, RobotPattern),
            [
                {"robot_id": robot_id, "pattern": glob, "like": like, "actions": actions}
                for glob, (like, actions) in patterns.items()
            ],
        )
    return robot_id


async def delete_robot(conn: AsyncConnection, name: str) -> bool:
    result = await conn.execute(delete(Robot).where(Robot.name == name))
    return result.rowcount > 0


async def list_robots(
    conn: AsyncConnection, namespace: str | None = None
) -> list[tuple[str, datetime | None, bool, str, str]]:
    """(name, expires_at, disabled, namespace or pattern, actions), one row per grant;
    with `namespace`, the grants in it by name only."""
    columns = (Robot.name, Robot.expires_at, Robot.disabled)
    query: Any = (
        select(*columns, Namespace.name.label("target"), RobotGrant.actions)
        .join(RobotGrant, RobotGrant.robot_id == Robot.id)
        .join(Namespace, Namespace.id == RobotGrant.namespace_id)
    )
    if namespace is not None:
        query = query.where(Namespace.name == namespace).order_by(Robot.name, Namespace.name)
    else:
        patterns = select(*columns, RobotPattern.pattern, RobotPattern.actions).join(
            RobotPattern, RobotPattern.robot_id == Robot.id
        )
        query = union(query, patterns).order_by("name", "target")
    return [tuple(row) for row in await conn.execute(query)]


# Personal access tokens


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: int
    user: str
    name: str
    secret_digest: str
    scopes: str
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    last_used_from: str | None


_TOKEN_COLUMNS = (
    PersonalToken.id,
    User.name,
    PersonalToken.name,
    PersonalToken.secret_digest,
    PersonalToken.scopes,
    PersonalToken.expires_at,
    PersonalToken.created_at,
    PersonalToken.last_used_at,
    PersonalToken.last_used_from,
)


async def insert_token(
    conn: AsyncConnection,
    user_id: int,
    name: str,
    digest: str,
    scopes: str,
    expires_at: datetime | None,
) -> int | None:
    """The new token's id, or None if the user has one of that name."""
    return await insert_new(
        conn,
        PersonalToken,
        user_id=user_id,
        name=name,
        secret_digest=digest,
        scopes=scopes,
        expires_at=expires_at,
        created_at=now(),
    )


async def set_token_digest(conn: AsyncConnection, token_id: int, digest: str) -> None:
    await conn.execute(
        update(PersonalToken).where(PersonalToken.id == token_id).values(secret_digest=digest)
    )


async def token_by_id(conn: AsyncConnection, token_id: int) -> TokenRow | None:
    row = (
        await conn.execute(
            select(*_TOKEN_COLUMNS)
            .join(User, User.id == PersonalToken.user_id)
            .where(PersonalToken.id == token_id)
        )
    ).first()
    return TokenRow(*row) if row else None


async def list_tokens(conn: AsyncConnection, user: str) -> list[TokenRow]:
    rows = await conn.execute(
        select(*_TOKEN_COLUMNS)
        .join(User, User.id == PersonalToken.user_id)
        .where(User.name == user)
        .order_by(PersonalToken.name)
    )
    return [TokenRow(*row) for row in rows]


async def delete_token(conn: AsyncConnection, user: str, name: str) -> bool:
    owner = select(User.id).where(User.name == user).scalar_subquery()
    result = await conn.execute(
        delete(PersonalToken).where(PersonalToken.user_id == owner, PersonalToken.name == name)
    )
    return result.rowcount > 0


async def token_used(conn: AsyncConnection, token_id: int, address: str) -> None:
    await conn.execute(
        update(PersonalToken)
        .where(PersonalToken.id == token_id)
        .values(last_used_at=now(), last_used_from=address[:64])
    )


# Groups and the roles they hold


@dataclass(frozen=True, slots=True)
class GroupRoleRow:
    id: int
    source: str
    group: str
    namespace: str
    role: str
    origin: str


_GROUP_ROLE_COLUMNS = (
    GroupRole.id,
    GroupRole.source,
    GroupRole.group_name,
    GroupRole.namespace,
    GroupRole.role,
    GroupRole.origin,
)


async def set_user_groups(conn: AsyncConnection, user_id: int, groups: set[str]) -> bool:
    """Make `groups` the user's; whether anything changed (nothing is written when
    nothing did, so a login that finds the same groups costs one read)."""
    held = set(await conn.scalars(select(UserGroup.group_name).where(UserGroup.user_id == user_id)))
    if held == groups:
        return False
    if held - groups:
        await conn.execute(
            delete(UserGroup).where(
                UserGroup.user_id == user_id, UserGroup.group_name.in_(held - groups)
            )
        )
    if groups - held:
        await conn.execute(
            dialect_insert(conn, UserGroup).on_conflict_do_nothing(),
            [{"user_id": user_id, "group_name": group} for group in sorted(groups - held)],
        )
    return True


async def user_groups(conn: AsyncConnection, user: str) -> list[str]:
    rows = await conn.scalars(
        select(UserGroup.group_name)
        .join(User, User.id == UserGroup.user_id)
        .where(User.name == user)
        .order_by(UserGroup.group_name)
    )
    return list(rows)


async def list_group_roles(
    conn: AsyncConnection, namespace: str | None = None
) -> list[GroupRoleRow]:
    query = select(*_GROUP_ROLE_COLUMNS).order_by(
        GroupRole.namespace, GroupRole.source, GroupRole.group_name
    )
    if namespace is not None:
        query = query.where(GroupRole.namespace == namespace)
    return [GroupRoleRow(*row) for row in await conn.execute(query)]


async def put_group_role(
    conn: AsyncConnection, source: str, group: str, namespace: str, role: str, origin: str
) -> None:
    statement = dialect_insert(conn, GroupRole).values(
        source=source, group_name=group, namespace=namespace, role=role, origin=origin
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[GroupRole.source, GroupRole.group_name, GroupRole.namespace],
            set_={"role": role, "origin": origin},
        )
    )


async def group_role(conn: AsyncConnection, role_id: int) -> GroupRoleRow | None:
    query = select(*_GROUP_ROLE_COLUMNS).where(GroupRole.id == role_id)
    row = (await conn.execute(query)).first()
    return GroupRoleRow(*row) if row else None


async def delete_group_role(conn: AsyncConnection, role_id: int) -> None:
    await conn.execute(delete(GroupRole).where(GroupRole.id == role_id))


async def delete_group_roles(
    conn: AsyncConnection, *, namespace: str | None = None, origin: str | None = None
) -> int:
    query = delete(GroupRole)
    if namespace is not None:
        query = query.where(GroupRole.namespace == namespace)
    if origin is not None:
        query = query.where(GroupRole.origin == origin)
    return (await conn.execute(query)).rowcount


async def roles_of(conn: AsyncConnection, user: str) -> list[tuple[str, str, str | None]]:
    """Where each of a user's roles comes from: (namespace, role, group), the group
    None for a direct membership; admin through a group has namespace ''."""
    direct = (
        select(Namespace.name.label("namespace"), Member.role, null().label("group_name"))
        .join(Member, Member.namespace_id == Namespace.id)
        .join(User, User.id == Member.user_id)
        .where(User.name == user)
    )
    grouped = (
        select(GroupRole.namespace, GroupRole.role, GroupRole.group_name)
        .select_from(User)
        .join(UserGroup, UserGroup.user_id == User.id)
        .join(*_through_groups())
        .where(User.name == user)
    )
    rows: Any = await conn.execute(union(direct, grouped).order_by("namespace", "group_name"))
    return [(ns, role, group) for ns, role, group in rows]


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
