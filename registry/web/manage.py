"""The console's management pages: namespaces with their members and robots (owners),
users and the registry's state (admins). The same account service and the same checks
as /api/v1/ (auth/accounts.deny_unless_owner), so a page refuses what the API refuses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from registry.auth.accounts import (
    ROLES,
    AccountError,
    Accounts,
    deny_unless_owner,
    split_permissions,
)
from registry.auth.identity import ROBOT_PREFIX
from registry.auth.scopes import ACTIONS_IN_ORDER
from registry.auth.sessions import Session
from registry.errors import Denied, Invalid, RouteUnknown
from registry.names import check_namespace
from registry.proxy.counters import COUNTERS
from registry.requests import registry_of
from registry.web import urls
from registry.web.pages import confirm, console, field, fields, grants, page, see

_MAX_ROBOT_DAYS = 36_500
# A hold longer than a week is forgotten, not a backup.
MAX_HOLD_HOURS = 168


def accounts_of(request: Request) -> Accounts:
    auth = registry_of(request).auth
    if auth is None:
        raise RouteUnknown(message="authentication is off in this registry: it has no accounts")
    return auth.accounts


def admins_only(session: Session) -> None:
    if not session.identity.admin:
        raise Denied(message="only an admin may do this")


# The registry's own remotes, rules and keys have no namespace; "-" stands for it in
# paths (no namespace can be named so).
REGISTRY_WIDE = "-"


async def may_manage(request: Request, session: Session, namespace: str) -> None:
    if not namespace:
        admins_only(session)
    else:
        await deny_unless_owner(accounts_of(request), session.identity, namespace)


def namespace_in_path(request: Request) -> str:
    """The {namespace} of a path: "-" (REGISTRY_WIDE) is the registry's own."""
    found: str = request.path_params["namespace"]
    return "" if found == REGISTRY_WIDE else found


async def confirmed_removal(
    request: Request,
    session: Session,
    *,
    kind: str,
    path: urls.Path,
    what: str,
    back: str,
    consequence: str,
    remove: Callable[[str, str], Awaitable[None]],
) -> Response:
    """Remove what a namespace (or, '-', the registry) keeps, named by the path's `kind`
    parameter, by its keepers: asked on GET (what goes, what follows), done on POST."""
    namespace, name = namespace_in_path(request), request.path_params[kind]
    await may_manage(request, session, namespace)
    if request.method == "GET":
        action = path(namespace=namespace or REGISTRY_WIDE, **{kind: name})
        return confirm(
            session, what=f"{what} {name}", back=back, action=action, consequence=consequence
        )
    await remove(namespace, name)
    return see(back)


async def owned_namespace(request: Request, session: Session) -> tuple[str, Accounts]:
    """The namespace of the path, if the caller owns it (or is an admin)."""
    name = check_namespace(request.path_params["namespace"])
    accounts = accounts_of(request)
    await deny_unless_owner(accounts, session.identity, name)
    return name, accounts


@console
async def namespaces(request: Request, session: Session) -> Response:
    accounts = accounts_of(request)
    if request.method == "POST":
        admins_only(session)
        owner = field(request, "owner") or None
        name = field(request, "name")
        await accounts.add_namespace(name, public=field(request, "public") == "on", owner=owner)
        return see(urls.NAMESPACE(namespace=name))
    listed = await accounts.list_namespaces()
    if not session.identity.admin:
        readable = await accounts.readable_namespaces(session.identity) or set()
        listed = [n for n in listed if n[0] in readable]
    return page("namespaces.html", session=session, namespaces=listed)


async def _namespace_page(
    request: Request, session: Session, namespace: str, secret: tuple[str, str] | None = None
) -> Response:
    accounts = accounts_of(request)
    registry = registry_of(request)
    robots = [
        r
        for r in await accounts.list_robots(namespace)
        if r.name.startswith(f"{ROBOT_PREFIX}{namespace}+")
    ]
    return page(
        "namespace.html",
        session=session,
        namespace=namespace,
        members=await accounts.list_members(namespace),
        robots=robots,
        roles=list(ROLES),
        actions=ACTIONS_IN_ORDER,
        usage=await registry.usage.namespace(namespace),
        policy=(await registry.policies.get(namespace)).to_json(),
        secret=secret,
        group_roles=await accounts.list_group_roles(namespace),
        group_role_remover=lambda ident: urls.REMOVE_NAMESPACE_GROUP_ROLE(
            namespace=namespace, ident=str(ident)
        ),
    )


@console
async def namespace(request: Request, session: Session) -> Response:
    name, _ = await owned_namespace(request, session)
    return await _namespace_page(request, session, name)


@console
async def set_member(request: Request, session: Session) -> Response:
    name, accounts = await owned_namespace(request, session)
    await accounts.set_member(name, field(request, "user"), field(request, "role"))
    return see(urls.NAMESPACE(namespace=name))


@console
async def remove_member(request: Request, session: Session) -> Response:
    name, accounts = await owned_namespace(request, session)
    await accounts.remove_member(name, request.path_params["user"])
    return see(urls.NAMESPACE(namespace=name))


@console
async def add_robot(request: Request, session: Session) -> Response:
    """The robot's secret is on the page this answers, and nowhere ever again."""
    name, accounts = await owned_namespace(request, session)
    days_text = field(request, "expires_days")
    expires = None
    if days_text:
        if not days_text.isdigit() or int(days_text) > _MAX_ROBOT_DAYS:
            raise Invalid(message=f"expiry: a number of days from 0 to {_MAX_ROBOT_DAYS}")
        expires = datetime.now(UTC) + timedelta(days=int(days_text))
    robot = f"{name}+{field(request, 'name')}"
    secret = await accounts.add_robot(robot, {name: fields(request, "actions")}, expires)
    return await _namespace_page(request, session, name, (ROBOT_PREFIX + robot, secret))


@console
async def remove_robot(request: Request, session: Session) -> Response:
    name, accounts = await owned_namespace(request, session)
    robot = request.path_params["robot"]
    if not robot.startswith(f"{ROBOT_PREFIX}{name}+"):
        raise Invalid(message=f"{robot!r} is not a robot of {name!r}")
    await accounts.remove_robot(robot)
    return see(urls.NAMESPACE(namespace=name))


@console
async def users(request: Request, session: Session) -> Response:
    admins_only(session)
    accounts = accounts_of(request)
    if request.method == "POST":
        await accounts.add_user(
            field(request, "name"),
            field(request, "password"),
            admin=field(request, "admin") == "on",
        )
        return see(urls.USERS())
    return await _users_page(request, session, reset=request.query_params.get("reset"))


async def _users_page(request: Request, session: Session, **shown: Any) -> Response:
    accounts = accounts_of(request)
    return page(
        "users.html",
        session=session,
        users=await accounts.list_users(),
        group_roles=await accounts.list_group_roles(),
        roles=list(ROLES),
        group_role_remover=lambda ident: urls.REMOVE_GROUP_ROLE(ident=str(ident)),
        # Robots across namespaces: an admin's, named without a namespace's +.
        robots=[r for r in await accounts.list_robots() if "+" not in r.name],
        actions=ACTIONS_IN_ORDER,
        **{"reset": None, "secret": None, "robot_failed": None, **shown},
    )


@console
async def add_system_robot(request: Request, session: Session) -> Response:
    """A robot acting in several namespaces; its secret is on the page this answers."""
    admins_only(session)
    name = field(request, "name")
    if "+" in name:
        return await _users_page(
            request, session, robot_failed="Names with + belong to a namespace's robots."
        )
    by_name, by_pattern = split_permissions(grants(request, "permissions"))
    days = field(request, "expires_days")
    if days and (not days.isdigit() or int(days) > _MAX_ROBOT_DAYS):
        return await _users_page(
            request, session, robot_failed=f"Expiry: a number of days up to {_MAX_ROBOT_DAYS}."
        )
    expires = datetime.now(UTC) + timedelta(days=int(days)) if days else None
    try:
        secret = await accounts_of(request).add_robot(name, by_name, expires, by_pattern)
    except AccountError as exc:
        return await _users_page(request, session, robot_failed=str(exc))
    return await _users_page(request, session, secret=(ROBOT_PREFIX + name, secret))


@console
async def remove_system_robot(request: Request, session: Session) -> Response:
    admins_only(session)
    await accounts_of(request).remove_robot(request.path_params["robot"])
    return see(urls.USERS() + "#robots")


@console
async def add_group_role(request: Request, session: Session) -> Response:
    """A group's role: in the namespace of the path (its owners), or anywhere (admins)."""
    if "namespace" in request.path_params:
        name, accounts = await owned_namespace(request, session)
        if field(request, "role") == "admin":
            raise Denied(message="only an admin may give a group the admin role")
        done = urls.NAMESPACE(namespace=name)
    else:
        admins_only(session)
        accounts, name, done = accounts_of(request), field(request, "namespace"), urls.USERS()
    await accounts.set_group_role(
        field(request, "source"), field(request, "group"), name, field(request, "role")
    )
    return see(done + "#group-roles")


@console
async def remove_group_role(request: Request, session: Session) -> Response:
    ident = request.path_params["ident"]
    if not ident.isdigit() or len(ident) > 12:
        raise Invalid(message=f"no group role {ident[:20]!r}")
    if "namespace" in request.path_params:
        name, accounts = await owned_namespace(request, session)
        await accounts.remove_group_role(int(ident), name)
        return see(urls.NAMESPACE(namespace=name) + "#group-roles")
    admins_only(session)
    await accounts_of(request).remove_group_role(int(ident))
    return see(urls.USERS() + "#group-roles")


@console
async def change_user(request: Request, session: Session) -> Response:
    admins_only(session)
    accounts = accounts_of(request)
    user, action = request.path_params["user"], request.path_params["action"]
    if action not in ("disable", "enable", "remove", "password"):
        raise Invalid(message=f"no such change of a user: {action[:50]!r}")
    if user == session.identity.name:
        raise Invalid(message="you change your own account on its page (Account), not here")
    if action == "password":
        # A reset: their sessions end (auth/sessions.py); the admin tells them the password.
        await accounts.set_password(user, field(request, "password"))
        return see(f"{urls.USERS()}?reset={quote(user)}")
    if action == "remove":
        await accounts.remove_user(user)
    else:
        await accounts.set_user(user, admin=None, disabled=action == "disable")
    return see(urls.USERS())


@console
async def status(request: Request, session: Session) -> Response:
    """Storage use, garbage collection and the mirror, for admins."""
    admins_only(session)
    return await _status_page(request, session)


async def _status_page(request: Request, session: Session, **shown: Any) -> Response:
    registry = registry_of(request)
    mirror = None
    if registry.mirror is not None:
        mirror = {
            "upstreams": registry.mirror.settings.upstreams,
            "stored": await registry.mirror.cache_summary(),
            "counters": await registry.mirror.counters.totals(),
            "labels": COUNTERS,
        }
    gc = await registry.gc.status()
    return page(
        "status.html",
        session=session,
        usage=await registry.usage.overall(),
        gc=gc,
        waiting=registry.gc.explain(gc["waiting"]),
        mirror=mirror,
        max_hold_hours=MAX_HOLD_HOURS,
        **{"ran": None, "failed": None, "checked": None, **shown},
    )


@console
async def hold(request: Request, session: Session) -> Response:
    """Hold garbage collection's deletions for some hours (a backup), or release them."""
    admins_only(session)
    until = None
    if field(request, "action") != "release":
        text = field(request, "hours").strip()
        try:
            hours = float(text)
        except ValueError:
            hours = -1
        if not 0 < hours <= MAX_HOLD_HOURS:
            failed = f"Hold for: a number of hours above 0 and up to {MAX_HOLD_HOURS}"
            return await _status_page(request, session, failed=failed)
        until = datetime.now(UTC) + timedelta(hours=hours)
    holder = f"console:{session.identity.name}"
    await registry_of(request).gc.hold(until, holder)
    return see(f"{urls.STATUS()}#collection")


@console
async def collect(request: Request, session: Session) -> Response:
    """One pass now, in this request (as every replica's worker runs them: they may
    overlap, each batch's rows locked by one), and what it did."""
    admins_only(session)
    done = await registry_of(request).gc.collect(f"console:{session.identity.name}")
    return await _status_page(request, session, ran=done)


@console
async def check(request: Request, session: Session) -> Response:
    """`registry check` without --repair: the storage walked once against the blobs
    table, in this request (a large S3 store takes a while: the CLI's is the same), and
    what it found. Repairs stay with the CLI, where an operator reads the report first."""
    admins_only(session)
    report = await registry_of(request).check.run(repair=False)
    return await _status_page(request, session, checked=report)
