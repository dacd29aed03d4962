"""Single sign-on in the console: "Log in with <provider>" sends the browser to the
OpenID provider (auth/oidc.py); its callback makes or finds the account, opens a console
session and goes on to where the person was going.

The login's `state` and where to go next ride in a cookie of their own: HttpOnly,
ten minutes, SameSite=Lax because the provider's redirect back is a cross-site
navigation, which a Strict cookie would not come with. For the same reason the callback
answers with a page that moves on by itself, rather than a redirect: the session cookie
is Strict, and a browser sends it only on a navigation that starts on this site.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.auth.accounts import AccountError
from registry.auth.oidc import LoginFailed, Provider
from registry.auth.sessions import COOKIE, same
from registry.errors import RouteUnknown, Unauthorized, Unavailable
from registry.requests import registry_of
from registry.web import urls
from registry.web.pages import login_page, page, safe_next, set_cookie

OIDC_COOKIE = "registry_oidc"
_PENDING_SECONDS = 600


def _redirect_uri(request: Request) -> str:
    auth = registry_of(request).auth
    assert auth is not None
    base = auth.settings.oidc.external_url or str(request.base_url)
    return base.rstrip("/") + urls.OIDC_CALLBACK()


def _provider(request: Request) -> Provider:
    registry = registry_of(request)
    if registry.auth is None or registry.auth.provider is None or registry.console is None:
        raise RouteUnknown(message="single sign-on is not set up here (auth.oidc.issuer)")
    return registry.auth.provider


async def oidc_login(request: Request) -> Response:
    provider = _provider(request)
    target = safe_next(request.query_params.get("next"))
    try:
        url, state = await provider.start(_redirect_uri(request))
    except Unavailable as exc:
        return login_page(request, 503, next=target, error=exc.text)
    answer = RedirectResponse(url, status_code=302)
    set_cookie(answer, request, OIDC_COOKIE, f"{state} {target}", _PENDING_SECONDS, "lax")
    return answer


async def oidc_callback(request: Request) -> Response:
    provider = _provider(request)
    registry = registry_of(request)
    assert registry.auth is not None and registry.console is not None
    params = request.query_params
    kept, _, target = (request.cookies.get(OIDC_COOKIE) or "").partition(" ")
    target = safe_next(target)
    if "error" in params:
        said = params.get("error_description") or params["error"]
        return _refused(request, 401, f"The identity provider did not log you in: {said[:300]}")
    state, code = params.get("state", ""), params.get("code", "")
    if not kept or not same(state, kept) or not code:
        return _refused(
            request,
            400,
            "This login did not start here, or took more than ten minutes: start again.",
        )
    try:
        login = await provider.finish(code, kept, _redirect_uri(request))
        account = await registry.auth.provider_login(login)
        secret = await registry.console.open_for(account)
    except LoginFailed as exc:
        return _refused(request, 401, f"Single sign-on failed: {exc}.")
    except AccountError as exc:
        return _refused(request, 409, f"Single sign-on failed: {exc}.")
    except (Unavailable, Unauthorized) as exc:
        return _refused(request, exc.status, exc.text)
    answer = page("continue.html", session=None, target=target, name=account.identity.name)
    answer.delete_cookie(OIDC_COOKIE, path=urls.HOME())
    hours = registry.settings.auth.console_session_hours
    set_cookie(answer, request, COOKIE, secret, int(hours * 3600))
    return answer


def _refused(request: Request, status: int, message: str) -> Response:
    answer = login_page(request, status, error=message)
    answer.delete_cookie(OIDC_COOKIE, path=urls.HOME())
    return answer
