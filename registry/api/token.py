"""The token endpoint of the Docker token spec: GET /token (HTTP Basic or anonymous) and
the OAuth2 form POST /token (grant_type password or refresh_token)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry import context
from registry.api.access import decode_basic
from registry.auth.accounts import Account
from registry.auth.identity import ANONYMOUS, Identity
from registry.auth.scopes import Scope, parse_scopes
from registry.auth.service import AuthService
from registry.errors import RegistryError, RouteUnknown, Unauthorized
from registry.requests import client_address, registry_of, small_body

# An OAuth2 form is a few short fields; anything longer is not one.
_MAX_FORM_BYTES = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TokenRequestInvalid(RegistryError):
    """A token request this endpoint cannot answer: another service, an unknown grant
    type, a body that is not a form."""

    code, status, message = "UNSUPPORTED", 400, "unsupported token request"


async def token(request: Request) -> JSONResponse:
    auth = registry_of(request).auth
    if auth is None:
        raise RouteUnknown(message="authentication is off in this registry; no tokens needed")
    try:
        if request.method == "POST":
            return await _oauth2(request, auth)
        return await _get(request, auth)
    except Unauthorized as exc:
        # A 401 names the scheme that would work: Basic, here at the token endpoint.
        exc.headers.setdefault("WWW-Authenticate", f'Basic realm="{auth.settings.service}"')
        raise


async def _get(request: Request, auth: AuthService) -> JSONResponse:
    params = request.query_params
    _check_service(auth, params.get("service"))
    scopes = parse_scopes(params.getlist("scope"))
    account: Account | None = None
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        pair = decode_basic(credentials)
        if pair is None:
            raise Unauthorized(message="malformed Basic credentials")
        account = await auth.login(*pair, client_address(request))
        requested = params.get("account")
        if requested and requested != account.identity.name:
            raise Unauthorized(
                message=f"account {requested[:100]!r} does not match the credentials given"
            )
    offline = account is not None and params.get("offline_token", "").lower() == "true"
    identity = account.identity if account else ANONYMOUS
    return await _answer(auth, identity, scopes, account if offline else None)


async def _oauth2(request: Request, auth: AuthService) -> JSONResponse:
    form = await _form(request)
    _check_service(auth, form.get("service"))
    scopes = parse_scopes([form.get("scope", "")])
    grant_type = form.get("grant_type")
    if grant_type == "password":
        account = await auth.login(
            form.get("username", ""), form.get("password", ""), client_address(request)
        )
    elif grant_type == "refresh_token":
        account = await auth.redeem(form.get("refresh_token", ""))
    else:
        raise TokenRequestInvalid(
            {"grant_type": (grant_type or "")[:50]},
            message="grant_type must be password or refresh_token",
        )
    offline = grant_type == "password" and form.get("access_type") == "offline"
    return await _answer(auth, account.identity, scopes, account if offline else None, oauth2=True)


async def _answer(
    auth: AuthService,
    identity: Identity,
    scopes: list[Scope],
    refresh_for: Account | None,
    *,
    oauth2: bool = False,
) -> JSONResponse:
    """A token for what `identity` may have of `scopes`, and a refresh token for
    `refresh_for` if given. The OAuth2 form also names the scopes granted."""
    context.current().act_as(identity.kind, identity.name)
    granted = await auth.grant(identity, scopes)
    issued = await auth.issue(identity, scopes, granted)
    body: dict[str, object] = {
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": _rfc3339(issued.issued_at),
    }
    if oauth2:
        body["scope"] = " ".join(str(scope) for scope in granted)
    if refresh_for is not None:
        body["refresh_token"] = auth.refresh_token(refresh_for)
    return JSONResponse(body, headers=_NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise TokenRequestInvalid(
            message="POST /token takes an application/x-www-form-urlencoded form"
        )
    body = await small_body(request, _MAX_FORM_BYTES)
    if body is None:
        raise TokenRequestInvalid(
            message=f"the token request form is larger than {_MAX_FORM_BYTES} bytes"
        )
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise TokenRequestInvalid(message="the token request form is not UTF-8") from None
    # `scope` may repeat; its values are joined as OAuth2's space-separated list.
    return {
        key: " ".join(values) if key == "scope" else values[0] for key, values in fields.items()
    }


def _check_service(auth: AuthService, service: str | None) -> None:
    if service and service != auth.settings.service:
        raise TokenRequestInvalid(
            {"service": service[:100]},
            message=f"this token service is {auth.settings.service!r}, not {service[:100]!r}",
        )


def _rfc3339(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")
