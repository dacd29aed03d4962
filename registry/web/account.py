"""A user's own account in the console: where each of their roles comes from, their
personal access tokens (made, shown once, revoked), and a new password for a local
account, given the current one (checked within the failed-login limit, as a login is).
Changing it ends every session of the account, this one too (auth/sessions.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry.auth.accounts import AccountError
from registry.auth.scopes import ACTIONS_IN_ORDER
from registry.auth.sessions import Session
from registry.errors import Denied, RouteUnknown, TooManyRequests, Unauthorized
from registry.requests import client_address, registry_of
from registry.web import urls
from registry.web.manage import accounts_of
from registry.web.pages import console, field, grants, page, see

# The choices of a token's lifetime, in days; 0 is never.
TOKEN_DAYS = (7, 30, 90, 365, 0)


async def _shown(request: Request, session: Session, status: int = 200, **more: Any) -> Response:
    accounts = accounts_of(request)
    name = session.identity.name
    external = await accounts.external_user(name)
    groups, roles = await accounts.roles_of(name)
    return page(
        "account.html",
        status,
        session=session,
        source=external.source if external else "local",
        groups=groups,
        roles=roles,
        tokens=await accounts.list_tokens(name),
        actions=ACTIONS_IN_ORDER,
        token_days=TOKEN_DAYS,
        request_host=request.url.netloc,
        **{"failed": None, "made": None, **more},
    )


def _named(session: Session) -> None:
    if not session.identity.name:
        raise RouteUnknown(message="an open registry has no accounts")


@console
async def account(request: Request, session: Session) -> Response:
    _named(session)
    if request.method == "GET":
        return await _shown(request, session)
    auth = registry_of(request).auth
    assert auth is not None  # a named session exists only with accounts
    new = field(request, "new")
    try:
        await auth.login(session.identity.name, field(request, "current"), client_address(request))
        if new != field(request, "repeat"):
            raise AccountError("the new password and its repetition differ")
        await accounts_of(request).set_password(session.identity.name, new)
    except (Unauthorized, TooManyRequests) as exc:
        failed = "The current password is wrong." if exc.status == 401 else exc.text
        return await _shown(request, session, exc.status, failed=failed)
    except AccountError as exc:
        return await _shown(request, session, 400, failed=str(exc))
    return see(f"{urls.LOGIN()}?changed=1")


@console
async def add_token(request: Request, session: Session) -> Response:
    """A new token, shown on the page this once (not after a redirect, which would need
    it kept somewhere)."""
    _named(session)
    scopes = grants(request, "scopes")
    try:
        days = int(field(request, "days") or "30")
        if days not in TOKEN_DAYS:
            raise ValueError
    except ValueError:
        return await _shown(request, session, 400, token_failed="Choose a lifetime from the list.")
    expires = datetime.now(UTC) + timedelta(days=days) if days else None
    name = field(request, "name")
    try:
        made = await accounts_of(request).add_token(session.identity.name, name, scopes, expires)
    except AccountError as exc:
        return await _shown(request, session, 400, token_failed=str(exc))
    return await _shown(request, session, 201, made={"name": name, "token": made})


@console
async def revoke_token(request: Request, session: Session) -> Response:
    _named(session)
    if session.identity.token_id is not None:
        raise Denied(message="a personal access token cannot manage tokens")
    await accounts_of(request).remove_token(session.identity.name, request.path_params["token"])
    return see(urls.ACCOUNT() + "#tokens")
