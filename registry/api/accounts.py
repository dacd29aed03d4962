"""/api/v1/: manage users, namespaces, members and robots over HTTP.

Admins may do everything here; a namespace's owners manage its members and robots.
Callers authenticate as on /v2/: a bearer token from /token, or HTTP Basic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.api.access import authorize, caller_identity
from registry.api.common import json_object, registry_of
from registry.auth.accounts import AccountError, AccountExists, Accounts, AccountUnknown
from registry.auth.identity import ROBOT_PREFIX, Identity
from registry.errors import Conflict, Denied, Invalid, NotFound, RouteUnknown, Unauthorized

_MAX_BODY = 64 * 1024
# A hundred years: longer is "never", which is no expiry at all.
_MAX_ROBOT_DAYS = 36_500

Handler = Callable[[Request, Accounts, Identity], Awaitable[Response]]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate the caller and translate account errors into API errors."""

    async def run(request: Request) -> Response:
        auth = registry_of(request).auth
        if auth is None:
            raise RouteUnknown(message="authentication is off in this registry; no accounts")
        await authorize(request, None)
        identity = await caller_identity(request)
        if identity.anonymous:
            raise Unauthorized(message="log in to manage accounts")
        try:
            return await handler(request, auth.accounts, identity)
        except AccountExists as exc:
            raise Conflict(message=str(exc)) from None
        except AccountUnknown as exc:
            raise NotFound(message=str(exc)) from None
        except AccountError as exc:
            raise Invalid(message=str(exc)) from None

    return run


def _require_admin(identity: Identity) -> None:
    if not identity.admin:
        raise Denied(message="only an admin may do this")


async def _require_owner(accounts: Accounts, identity: Identity, namespace: str) -> None:
    if identity.admin or await accounts.role(identity, namespace) == "owner":
        return
    raise Denied(message=f"only an owner of {namespace!r} or an admin may do this")


async def _body(request: Request) -> dict[str, Any]:
    return await json_object(request, _MAX_BODY)


def _field(body: dict[str, Any], key: str, kind: type, default: Any = ...) -> Any:
    value = body.get(key, default)
    if value is ...:
        raise Invalid({"field": key}, message=f"{key!r} is required")
    wrong = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
    # null stands for "not given" only where that is what the default says.
    if wrong and not (value is None and default is None) and value is not default:
        raise Invalid({"field": key}, message=f"{key!r} must be a {kind.__name__}")
    return value


@endpoint
async def users(request: Request, accounts: Accounts, identity: Identity) -> Response:
    _require_admin(identity)
    if request.method == "POST":
        body = await _body(request)
        name = _field(body, "name", str)
        await accounts.add_user(
            name, _field(body, "password", str), admin=_field(body, "admin", bool, False)
        )
        return JSONResponse({"name": name}, status_code=201)
    listed = [
        {"name": u.name, "admin": u.is_admin, "disabled": u.disabled}
        for u in await accounts.list_users()
    ]
    return JSONResponse({"users": listed})


@endpoint
async def user(request: Request, accounts: Accounts, identity: Identity) -> Response:
    _require_admin(identity)
    name = request.path_params["user"]
    if request.method == "DELETE":
        await accounts.remove_user(name)
        return Response(status_code=204)
    body = await _body(request)
    if "password" in body:
        await accounts.set_password(name, _field(body, "password", str))
    await accounts.set_user(
        name,
        admin=_field(body, "admin", bool, None),
        disabled=_field(body, "disabled", bool, None),
    )
    return Response(status_code=204)


@endpoint
async def namespaces(request: Request, accounts: Accounts, identity: Identity) -> Response:
    _require_admin(identity)
    if request.method == "POST":
        body = await _body(request)
        name = _field(body, "name", str)
        await accounts.add_namespace(
            name, public=_field(body, "public", bool, False), owner=_field(body, "owner", str, None)
        )
        return JSONResponse({"name": name}, status_code=201)
    listed = [
        {"name": name, "public": public, "members": count}
        for name, public, count in await accounts.list_namespaces()
    ]
    return JSONResponse({"namespaces": listed})


@endpoint
async def namespace(request: Request, accounts: Accounts, identity: Identity) -> Response:
    _require_admin(identity)
    name = request.path_params["namespace"]
    if request.method == "DELETE":
        await accounts.remove_namespace(name)
    else:
        await accounts.set_public(name, _field(await _body(request), "public", bool))
    return Response(status_code=204)


@endpoint
async def members(request: Request, accounts: Accounts, identity: Identity) -> Response:
    namespace = request.path_params["namespace"]
    await _require_owner(accounts, identity, namespace)
    listed = [{"user": u, "role": role} for u, role in await accounts.list_members(namespace)]
    return JSONResponse({"members": listed})


@endpoint
async def member(request: Request, accounts: Accounts, identity: Identity) -> Response:
    namespace, name = request.path_params["namespace"], request.path_params["user"]
    await _require_owner(accounts, identity, namespace)
    if request.method == "DELETE":
        await accounts.remove_member(namespace, name)
    else:
        await accounts.set_member(namespace, name, _field(await _body(request), "role", str))
    return Response(status_code=204)


@endpoint
async def robots(request: Request, accounts: Accounts, identity: Identity) -> Response:
    """A namespace's robots are named `robot$<namespace>+<name>` and act only in it."""
    namespace = request.path_params["namespace"]
    await _require_owner(accounts, identity, namespace)
    if request.method == "GET":
        listed = [
            {
                "name": robot.name,
                "actions": robot.grants.get(namespace, []),
                "expires_at": robot.expires_at.isoformat() if robot.expires_at else None,
            }
            for robot in await accounts.list_robots(namespace)
            if robot.name.startswith(f"{ROBOT_PREFIX}{namespace}+")
        ]
        return JSONResponse({"robots": listed})
    body = await _body(request)
    name = f"{namespace}+{_field(body, 'name', str)}"
    actions = _field(body, "actions", list)
    if not all(isinstance(action, str) for action in actions):
        raise Invalid({"field": "actions"}, message="'actions' must be a list of strings")
    days = _field(body, "expires_days", int, None)
    if days is not None and not 0 <= days <= _MAX_ROBOT_DAYS:
        raise Invalid(
            {"field": "expires_days"},
            message=f"'expires_days' must be between 0 and {_MAX_ROBOT_DAYS}",
        )
    expires = datetime.now(UTC) + timedelta(days=days) if days is not None else None
    secret = await accounts.add_robot(name, {namespace: actions}, expires)
    return JSONResponse({"name": ROBOT_PREFIX + name, "secret": secret}, status_code=201)


@endpoint
async def robot(request: Request, accounts: Accounts, identity: Identity) -> Response:
    namespace, name = request.path_params["namespace"], request.path_params["robot"]
    await _require_owner(accounts, identity, namespace)
    if not name.startswith(f"{ROBOT_PREFIX}{namespace}+"):
        raise NotFound(message=f"no robot named {name!r} in {namespace!r}")
    await accounts.remove_robot(name)
    return Response(status_code=204)
