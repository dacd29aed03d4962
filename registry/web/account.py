"""A user's own account in the console: a new password, given the current one (checked
within the failed-login limit, as a login is). Changing it ends every session of the
account, this one too (auth/sessions.py): the user logs in again with the new one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.auth.accounts import AccountError
from registry.auth.sessions import Session
from registry.errors import RouteUnknown, TooManyRequests, Unauthorized
from registry.requests import client_address, registry_of
from registry.web import urls
from registry.web.manage import accounts_of
from registry.web.pages import console, field, page, see


@console
async def account(request: Request, session: Session) -> Response:
    if not session.identity.name:
        raise RouteUnknown(message="an open registry has no accounts")
    if request.method == "GET":
        return page("account.html", session=session, failed=None)
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
        return page("account.html", exc.status, session=session, failed=failed)
    except AccountError as exc:
        return page("account.html", 400, session=session, failed=str(exc))
    return see(f"{urls.LOGIN()}?changed=1")
