"""/api/v1/: manage users, namespaces, members and robots over HTTP.

Admins may do everything here; a namespace's owners manage its members and robots.
Callers authenticate as on /v2/: a bearer token from /token, or HTTP Basic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

from pydantic import Field
from starlette.requests import Request

from registry.api.access import authorize, caller_identity
from registry.api.declare import Answer, Body, Operations, Page, PageQuery
from registry.auth.accounts import (
    AccountConflict,
    AccountError,
    Accounts,
    AccountUnknown,
    deny_unless_owner,
    split_permissions,
)
from registry.auth.identity import ROBOT_PREFIX, Identity
from registry.errors import Conflict, Denied, Invalid, NotFound, RouteUnknown, Unauthorized
from registry.requests import registry_of

OPERATIONS = Operations(tag="accounts")

# A hundred years: longer is "never", which is no expiry at all.
_MAX_ROBOT_DAYS = 36_500

Handler = Callable[..., Awaitable[Any]]


class NewUser(Body):
    name: str
    password: str
    admin: bool = False


class UserChange(Body):
    password: str | None = None
    admin: bool | None = None
    disabled: bool | None = None


class User(Answer):
    name: str
    admin: bool
    disabled: bool


class Created(Answer):
    name: str


class NewNamespace(Body):
    name: str
    public: bool = False
    owner: str | None = Field(None, description="a user made its first owner")


class NamespaceChange(Body):
    public: bool


class Namespace(Answer):
    name: str
    public: bool
    members: int


class Member(Answer):
    user: str
    role: str


class MemberChange(Body):
    role: str = Field(description="guest, developer, maintainer or owner")


class NewRobot(Body):
    name: str = Field(description="the robot is named robot$<namespace>+<name>")
    actions: list[str] = Field(description="of pull, push, delete")
    expires_days: int | None = Field(None, ge=0, le=_MAX_ROBOT_DAYS)


class Robot(Answer):
    name: str
    actions: list[str]
    expires_at: datetime | None


class Permission(Body):
    namespace: str = Field(
        description="a namespace, or a pattern of them (* any characters, ? one): "
        "`*` is every namespace, `team-*` those starting team-"
    )
    actions: list[str] = Field(description="of pull, push, delete")


class NewSystemRobot(Body):
    name: str = Field(description="the robot is named robot$<name>")
    permissions: list[Permission] = Field(min_length=1, max_length=1000)
    expires_days: int | None = Field(None, ge=0, le=_MAX_ROBOT_DAYS)


class SystemRobot(Answer):
    name: str
    permissions: list[Permission]
    expires_at: datetime | None


class RobotCreated(Answer):
    name: str
    secret: str = Field(description="shown this once; store it now")


@dataclass(frozen=True, slots=True)
class Caller:
    accounts: Accounts
    identity: Identity


async def caller_of(request: Request) -> Caller:
    auth = registry_of(request).auth
    if auth is None:
        raise RouteUnknown(message="authentication is off in this registry; no accounts")
    await authorize(request, None)
    identity = await caller_identity(request)
    if identity.anonymous:
        raise Unauthorized(message="log in to manage accounts")
    return Caller(auth.accounts, identity)


async def admin(request: Request, **_: str) -> Caller:
    """The access of the operations for admins only."""
    caller = await caller_of(request)
    if not caller.identity.admin:
        raise Denied(message="only an admin may do this")
    return caller


async def owner(request: Request, namespace: str, **_: str) -> Caller:
    """The access of a namespace's operations: its owners, and admins."""
    caller = await caller_of(request)
    await deny_unless_owner(caller.accounts, caller.identity, namespace)
    return caller


def translated(handler: Handler) -> Handler:
    """Account errors as API errors."""

    @wraps(handler)
    async def run(request: Request, **kwargs: Any) -> Any:
        try:
            return await handler(request, **kwargs)
        except AccountConflict as exc:
            raise Conflict(message=str(exc)) from None
        except AccountUnknown as exc:
            raise NotFound(message=str(exc)) from None
        except AccountError as exc:
            raise Invalid(message=str(exc)) from None

    return run


USERS = "/api/v1/users"
USER = "/api/v1/users/{user}"
NAMESPACES = "/api/v1/namespaces"
NAMESPACE = "/api/v1/namespaces/{namespace}"
MEMBERS = "/api/v1/namespaces/{namespace}/members"
MEMBER = "/api/v1/namespaces/{namespace}/members/{user}"
SYSTEM_ROBOTS = "/api/v1/robots"
SYSTEM_ROBOT = "/api/v1/robots/{robot}"
ROBOTS = "/api/v1/namespaces/{namespace}/robots"
ROBOT = "/api/v1/namespaces/{namespace}/robots/{robot}"


@OPERATIONS.operation(
    "GET",
    USERS,
    summary="List users (admins)",
    access=admin,
    response=User,
    query=PageQuery,
    paged="users",
    errors=[404],
)
@translated
async def list_users(request: Request, caller: Caller, query: PageQuery) -> Page[User]:
    listed = [
        User(name=u.name, admin=u.is_admin, disabled=u.disabled)
        for u in await caller.accounts.list_users()
    ]
    return Page.of(listed, lambda u: u.name, query)


@OPERATIONS.operation(
    "POST",
    USERS,
    summary="Add a user (admins)",
    access=admin,
    response=Created,
    status=201,
    body=NewUser,
    errors=[404, 409],
)
@translated
async def add_user(request: Request, caller: Caller, body: NewUser) -> Created:
    await caller.accounts.add_user(body.name, body.password, admin=body.admin)
    return Created(name=body.name)


@OPERATIONS.operation(
    "PATCH",
    USER,
    summary="Change a user's password, admin or disabled flag (admins)",
    access=admin,
    body=UserChange,
    errors=[404],
)
@translated
async def change_user(request: Request, caller: Caller, user: str, body: UserChange) -> None:
    if body.password is not None:
        await caller.accounts.set_password(user, body.password)
    await caller.accounts.set_user(user, admin=body.admin, disabled=body.disabled)


@OPERATIONS.operation("DELETE", USER, summary="Remove a user (admins)", access=admin, errors=[404])
@translated
async def remove_user(request: Request, caller: Caller, user: str) -> None:
    await caller.accounts.remove_user(user)


@OPERATIONS.operation(
    "GET",
    NAMESPACES,
    summary="List namespaces (admins)",
    access=admin,
    response=Namespace,
    query=PageQuery,
    paged="namespaces",
    errors=[404],
)
@translated
async def list_namespaces(request: Request, caller: Caller, query: PageQuery) -> Page[Namespace]:
    listed = [
        Namespace(name=name, public=public, members=count)
        for name, public, count in await caller.accounts.list_namespaces()
    ]
    return Page.of(listed, lambda n: n.name, query)


@OPERATIONS.operation(
    "POST",
    NAMESPACES,
    summary="Add a namespace (admins)",
    access=admin,
    response=Created,
    status=201,
    body=NewNamespace,
    errors=[404, 409],
)
@translated
async def add_namespace(request: Request, caller: Caller, body: NewNamespace) -> Created:
    await caller.accounts.add_namespace(body.name, public=body.public, owner=body.owner)
    return Created(name=body.name)


@OPERATIONS.operation(
    "PATCH",
    NAMESPACE,
    summary="Make a namespace public or private (admins)",
    access=admin,
    body=NamespaceChange,
    errors=[404],
)
@translated
async def change_namespace(
    request: Request, caller: Caller, namespace: str, body: NamespaceChange
) -> None:
    await caller.accounts.set_public(namespace, body.public)


@OPERATIONS.operation(
    "DELETE",
    NAMESPACE,
    summary="Remove a namespace (admins)",
    access=admin,
    errors=[404],
)
@translated
async def remove_namespace(request: Request, caller: Caller, namespace: str) -> None:
    await caller.accounts.remove_namespace(namespace)


@OPERATIONS.operation(
    "GET",
    MEMBERS,
    summary="List a namespace's members (owners)",
    access=owner,
    response=Member,
    query=PageQuery,
    paged="members",
    errors=[404],
)
@translated
async def list_members(
    request: Request, caller: Caller, namespace: str, query: PageQuery
) -> Page[Member]:
    listed = [
        Member(user=u, role=role) for u, role in await caller.accounts.list_members(namespace)
    ]
    return Page.of(listed, lambda m: m.user, query)


@OPERATIONS.operation(
    "PUT",
    MEMBER,
    summary="Add a member, or change their role (owners); 409 if it would leave no owner",
    access=owner,
    body=MemberChange,
    errors=[404, 409],
)
@translated
async def set_member(
    request: Request, caller: Caller, namespace: str, user: str, body: MemberChange
) -> None:
    await caller.accounts.set_member(namespace, user, body.role)


@OPERATIONS.operation(
    "DELETE",
    MEMBER,
    summary="Remove a member (owners); 409 if it is the last owner",
    access=owner,
    errors=[404, 409],
)
@translated
async def remove_member(request: Request, caller: Caller, namespace: str, user: str) -> None:
    await caller.accounts.remove_member(namespace, user)


@OPERATIONS.operation(
    "GET",
    ROBOTS,
    summary="List a namespace's robots (owners)",
    access=owner,
    response=Robot,
    query=PageQuery,
    paged="robots",
    errors=[404],
)
@translated
async def list_robots(
    request: Request, caller: Caller, namespace: str, query: PageQuery
) -> Page[Robot]:
    """A namespace's robots are named `robot$<namespace>+<name>` and act only in it."""
    listed = [
        Robot(name=r.name, actions=r.grants.get(namespace, []), expires_at=r.expires_at)
        for r in await caller.accounts.list_robots(namespace)
        if r.name.startswith(f"{ROBOT_PREFIX}{namespace}+")
    ]
    return Page.of(listed, lambda r: r.name, query)


@OPERATIONS.operation(
    "POST",
    ROBOTS,
    summary="Add a robot; its secret is in this answer only (owners)",
    access=owner,
    response=RobotCreated,
    status=201,
    body=NewRobot,
    errors=[404, 409],
)
@translated
async def add_robot(
    request: Request, caller: Caller, namespace: str, body: NewRobot
) -> RobotCreated:
    name = f"{namespace}+{body.name}"
    days = body.expires_days
    expires = datetime.now(UTC) + timedelta(days=days) if days is not None else None
    secret = await caller.accounts.add_robot(name, {namespace: body.actions}, expires)
    return RobotCreated(name=ROBOT_PREFIX + name, secret=secret)


@OPERATIONS.operation(
    "DELETE", ROBOT, summary="Remove a robot (owners)", access=owner, errors=[404]
)
@translated
async def remove_robot(request: Request, caller: Caller, namespace: str, robot: str) -> None:
    if not robot.startswith(f"{ROBOT_PREFIX}{namespace}+"):
        raise NotFound(message=f"no robot named {robot!r} in {namespace!r}")
    await caller.accounts.remove_robot(robot)


@OPERATIONS.operation(
    "GET",
    SYSTEM_ROBOTS,
    summary="List every robot, with its permissions in each namespace (admins)",
    access=admin,
    response=SystemRobot,
    query=PageQuery,
    paged="robots",
)
@translated
async def list_system_robots(
    request: Request, caller: Caller, query: PageQuery
) -> Page[SystemRobot]:
    listed = [
        SystemRobot(
            name=r.name,
            permissions=[Permission(namespace=ns, actions=a) for ns, a in r.grants.items()],
            expires_at=r.expires_at,
        )
        for r in await caller.accounts.list_robots()
    ]
    return Page.of(listed, lambda r: r.name, query)


@OPERATIONS.operation(
    "POST",
    SYSTEM_ROBOTS,
    summary="Add a robot that acts in several namespaces; its secret is in this answer "
    "only (admins)",
    access=admin,
    response=RobotCreated,
    status=201,
    body=NewSystemRobot,
    errors=[404, 409],
)
@translated
async def add_system_robot(request: Request, caller: Caller, body: NewSystemRobot) -> RobotCreated:
    """Permissions name namespaces that exist, or patterns, which also cover namespaces
    made later. A robot's actions in a namespace are those of every entry that names or
    matches it."""
    if "+" in body.name:
        raise Invalid(message="robot names with + belong to a namespace's robots; choose another")
    grants, patterns = split_permissions((p.namespace, p.actions) for p in body.permissions)
    days = body.expires_days
    expires = datetime.now(UTC) + timedelta(days=days) if days is not None else None
    secret = await caller.accounts.add_robot(body.name, grants, expires, patterns)
    return RobotCreated(name=ROBOT_PREFIX + body.name, secret=secret)


@OPERATIONS.operation(
    "DELETE", SYSTEM_ROBOT, summary="Remove any robot (admins)", access=admin, errors=[404]
)
@translated
async def remove_system_robot(request: Request, caller: Caller, robot: str) -> None:
    await caller.accounts.remove_robot(robot)


def registry_and_namespace(
    operations: Operations,
    part: str,
    method: str,
    tail: str,
    *,
    summary: str,
    errors: tuple[int, ...] = (),
    **declared: Any,
) -> Callable[[Handler], Handler]:
    """Declare a handler of `namespace` twice: at /api/v1/<part><tail> for the registry's
    own (admins; namespace "") and at /api/v1/namespaces/<ns>/<part><tail> for a
    namespace's (its owners), each with its own operation id."""

    def register(handler: Handler) -> Handler:
        async def registry_wide(request: Request, **kwargs: Any) -> Any:
            return await handler(request, namespace="", **kwargs)

        async def in_namespace(request: Request, **kwargs: Any) -> Any:
            return await handler(request, **kwargs)

        for made, name in ((registry_wide, handler.__name__), (in_namespace, "")):
            made.__name__ = name or f"{handler.__name__}_in_namespace"
            made.__doc__ = handler.__doc__
        operations.operation(
            method,
            f"/api/v1/{part}{tail}",
            summary=f"{summary} (admins)",
            access=admin,
            # 404 too: a registry without accounts (auth off) has no admins.
            errors=tuple({404, *errors}),
            **declared,
        )(registry_wide)
        operations.operation(
            method,
            f"/api/v1/namespaces/{{namespace}}/{part}{tail}",
            summary=f"{summary}, of a namespace (owners)",
            access=owner,
            errors=tuple({404, *errors}),
            **declared,
        )(in_namespace)
        return handler

    return register
