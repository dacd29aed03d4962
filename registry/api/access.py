"""The gate in front of every /v2/ route: who is asking, and may they do this?

A request carries a bearer token from /token, HTTP Basic credentials (when allowed), or
nothing. Without what it needs it gets 401 and a challenge naming the scope to ask for;
an account that could never be granted that scope gets 403 DENIED instead. Answers
depend on the namespace only, so they never reveal whether a repository exists.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from registry import context
from registry.auth.accounts import deny_unless_owner
from registry.auth.identity import ANONYMOUS, OPEN, Identity, kind_of
from registry.auth.scopes import CATALOG, PULL, PUSH, Scope, repository_scope
from registry.auth.service import AuthService, within
from registry.auth.tokens import AccessToken, TokenInvalid
from registry.errors import Denied, Unauthorized, Unsupported
from registry.names import check_name, namespace_of
from registry.proxy.mirror import MirrorRoute
from registry.requests import client_address, registry_of

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Caller:
    """What the gate learned about a request: a verified token or a logged-in identity."""

    token: AccessToken | None = None
    identity: Identity | None = None


def protect(endpoint: Endpoint, action: str) -> Endpoint:
    """Guard a repository endpoint (one method, and HEAD with GET): the caller needs
    `action` in the repository."""

    async def guarded(request: Request) -> Response:
        await require_repository(request, request.path_params["name"], action)
        return await endpoint(request)

    return guarded


async def require_repository(request: Request, name: str, action: str) -> str:
    """The gate of one repository (for /v2/ and the /api/v1/ handlers that act on one):
    the caller may do `action` there; returns the name, checked."""
    name = check_name(name)
    request.state.mirror = await _mirror_route(request, name, write=action != PULL)
    await authorize(request, repository_scope(name, action))
    return name


async def _mirror_route(request: Request, name: str, *, write: bool) -> MirrorRoute | None:
    """Where a mirrored repository comes from (None when it is hosted here). Mirrored
    repositories, and every repository of a mirror-only registry, refuse writes."""
    mirror = registry_of(request).mirror
    if mirror is None:
        return None
    route = await mirror.route(name)
    if write and (route is not None or mirror.settings.mirror_only):
        source = f"a mirror of {route.upstream.url}" if route else "a mirror-only registry"
        raise Unsupported(
            {"name": name},
            message=f"{name} is in {source}: pushes and deletes are refused; push to a "
            "namespace hosted here, or to the upstream",
        )
    return route


def require(endpoint: Endpoint, scope: Scope | None) -> Endpoint:
    """Guard an endpoint outside any repository: the catalog's scope, or (None) any
    authenticated caller, anonymous included."""

    async def guarded(request: Request) -> Response:
        await authorize(request, scope)
        return await endpoint(request)

    return guarded


CATALOG_SCOPE = Scope(*CATALOG, frozenset({"*"}))


async def authorize(request: Request, scope: Scope | None) -> None:
    auth = registry_of(request).auth
    if auth is None:
        request.state.caller = Caller(identity=OPEN)
        context.current().act_as("anonymous", "")
        return
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        try:
            token = auth.tokens.verify(credentials.strip())
        except TokenInvalid as exc:
            raise _challenge(
                request, auth, scope, f"invalid token: {exc}", invalid_token=True
            ) from None
        request.state.caller = Caller(token=token)
        context.current().act_as(kind_of(token.subject), token.subject, token.jti)
        if scope is None or token.allows(scope):
            return
        identity = await auth.identity(token.subject, token.token_id)
        if identity.anonymous or await auth.permits(identity, scope):
            raise _challenge(request, auth, scope, "the token does not grant this access")
        raise await _refused(auth, identity, scope)
    if scheme == "basic" and auth.settings.basic:
        pair = decode_basic(credentials)
        if pair is None:
            raise _challenge(request, auth, scope, "malformed Basic credentials")
        namespace = namespace_of(scope.name) if scope and scope.type == "repository" else None
        try:
            identity, actions = await auth.basic(*pair, client_address(request), namespace)
        except Unauthorized as exc:
            raise _challenge(request, auth, scope, exc.text) from None
        request.state.caller = Caller(identity=identity)
        context.current().act_as(identity.kind, identity.name)
        if scope is not None and not within(scope, actions):
            raise await _refused(auth, identity, scope)
        return
    raise _challenge(request, auth, scope)


async def may_push(request: Request, name: str) -> bool:
    """Whether the caller (through the gate already) may push in this repository: what
    its token grants, or else what its account may do now (a pull's token grants pull
    only; cosign reads what it signs with one)."""
    auth = registry_of(request).auth
    if auth is None:
        return True  # an open registry: anyone may push
    scope = repository_scope(name, PUSH)
    caller: Caller = request.state.caller
    if caller.token is not None and caller.token.allows(scope):
        return True
    return await auth.permits(await caller_identity(request), scope)


async def caller_identity(request: Request) -> Identity:
    """Who got through the gate; with a token, the account as it stands now."""
    caller: Caller = request.state.caller
    if caller.identity is not None:
        return caller.identity
    auth = registry_of(request).auth
    assert auth is not None and caller.token is not None
    return await auth.identity(caller.token.subject, caller.token.token_id)


async def _logged_in(request: Request, who: str) -> Identity | None:
    """The caller, who must have logged in (`who` says as whom, for the 401); None on an
    open registry, which has no accounts to ask."""
    if registry_of(request).auth is None:
        return None
    await authorize(request, None)
    identity = await caller_identity(request)
    if identity.anonymous:
        raise Unauthorized(message=f"log in as {who}")
    return identity


async def require_admin(request: Request, what: str) -> None:
    """Only admins, when auth is on."""
    identity = await _logged_in(request, f"an admin to {what}")
    if identity is not None and not identity.admin:
        raise Denied(message=f"only an admin may {what}")


async def require_owner(request: Request, namespace: str) -> bool:
    """Only the namespace's owners and admins, when auth is on; returns whether the caller
    is an admin (on an open registry, everyone is)."""
    identity = await _logged_in(request, f"an owner of {namespace!r} or an admin")
    if identity is None:
        return True
    auth = registry_of(request).auth
    assert auth is not None
    await deny_unless_owner(auth.accounts, identity, namespace)
    return identity.admin


async def owned_by_caller(request: Request, what: str) -> set[str] | None:
    """The namespaces the (logged-in) caller owns; None for an admin, or anyone on an
    open registry: all of them."""
    identity = await _logged_in(request, f"a namespace owner or an admin to {what}")
    auth = registry_of(request).auth
    if identity is None or auth is None:
        return None
    return await auth.accounts.owned_namespaces(identity)


def caller_name(request: Request) -> str:
    """Who is asking, for bounds kept per caller: the account's name, or the client's
    address when it has none (anonymous, or auth off). No query."""
    caller: Caller = request.state.caller
    if caller.token is not None and caller.token.subject:
        return caller.token.subject
    if caller.identity is not None and caller.identity.name:
        return caller.identity.name
    return client_address(request)


async def may(request: Request, scope: Scope) -> bool:
    """Whether the caller, already through the gate, may also do `scope` (say, pull from a
    mount's source)."""
    auth = registry_of(request).auth
    caller: Caller = request.state.caller
    if auth is None:
        return True
    if caller.token is not None:
        return caller.token.allows(scope)
    return await auth.permits(caller.identity or ANONYMOUS, scope)


async def _refused(auth: AuthService, identity: Identity, scope: Scope) -> Denied:
    """A 403 that says why, in what the caller may see (Accounts.refusal)."""
    why = await auth.accounts.refusal(identity, namespace_of(scope.name), scope.actions)
    return Denied(_detail(scope), message=why)


def _challenge(
    request: Request,
    auth: AuthService,
    scope: Scope | None,
    reason: str | None = None,
    *,
    invalid_token: bool = False,
) -> Unauthorized:
    realm = auth.settings.realm or str(request.base_url).rstrip("/") + "/token"
    parts = [f'realm="{realm}"', f'service="{auth.settings.service}"']
    if scope is not None:
        parts.append(f'scope="{scope}"')
    if invalid_token:
        parts.append('error="invalid_token"')
    return Unauthorized(
        _detail(scope) if scope else None,
        message=reason or "authentication required",
        headers={"WWW-Authenticate": "Bearer " + ",".join(parts)},
    )


def _detail(scope: Scope) -> list[dict[str, str]]:
    return [
        {"Type": scope.type, "Name": scope.name, "Action": action}
        for action in sorted(scope.actions)
    ]


def decode_basic(credentials: str) -> tuple[str, str] | None:
    """The name and password of HTTP Basic credentials, or None if they are malformed."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except ValueError:
        # binascii.Error and UnicodeDecodeError, and non-ASCII text (header bytes past
        # 0x7f arrive as latin-1 characters).
        return None
    name, sep, password = decoded.partition(":")
    # A control character names no account, and PostgreSQL refuses a NUL in text.
    return (name, password) if sep and name and name.isprintable() else None
