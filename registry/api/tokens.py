"""/api/v1/me/tokens: personal access tokens, the password of `docker login` and CI for
people whose identity is kept elsewhere (LDAP, OIDC) or here.

A token is made, listed and revoked by its owner, logged in with their password, a
console session or single sign-on; never with another token, so that a narrow token
cannot make itself a wider one. Admins list and revoke anyone's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import Field
from starlette.requests import Request

from registry.api.accounts import Caller, admin, caller_of, translated
from registry.api.declare import Answer, Body, Operations, Page, PageQuery
from registry.auth.accounts import TokenInfo
from registry.errors import Denied

OPERATIONS = Operations(tag="accounts")

# A year: a token for CI is renewed at least this often.
MAX_TOKEN_DAYS = 366


class TokenScope(Body):
    namespace: str = Field(description="a namespace, or a pattern: * any characters, ? one")
    actions: list[str] = Field(description="of pull, push, delete")


class NewToken(Body):
    name: str = Field(description="unique among the user's tokens")
    scopes: list[TokenScope] = Field(min_length=1, max_length=100)
    expires_days: int | None = Field(
        30, ge=1, le=MAX_TOKEN_DAYS, description="null: it never expires"
    )


class Token(Answer):
    name: str
    scopes: list[TokenScope]
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None = Field(description="updated at most once a minute")
    last_used_from: str | None


class TokenCreated(Answer):
    name: str
    token: str = Field(
        description="shown this once: the password of `docker login -u <user>`; store it now"
    )
    expires_at: datetime | None


async def person(request: Request, **_: str) -> Caller:
    """The access of a user's own tokens: logged in as a user, not with a token."""
    caller = await caller_of(request)
    if caller.identity.kind != "user":
        raise Denied(message="only users have personal access tokens; robots have a secret")
    if caller.identity.token_id is not None:
        raise Denied(
            message="a personal access token cannot manage tokens: log in with your "
            "password, or use the console"
        )
    return caller


def _shown(info: TokenInfo) -> Token:
    return Token(
        name=info.name,
        scopes=[TokenScope(namespace=glob, actions=actions) for glob, actions in info.scopes],
        expires_at=info.expires_at,
        created_at=info.created_at,
        last_used_at=info.last_used_at,
        last_used_from=info.last_used_from,
    )


MINE = "/api/v1/me/tokens"
MY_TOKEN = "/api/v1/me/tokens/{token}"
THEIRS = "/api/v1/users/{user}/tokens"
THEIR_TOKEN = "/api/v1/users/{user}/tokens/{token}"


@OPERATIONS.operation(
    "GET",
    MINE,
    summary="List your personal access tokens",
    access=person,
    response=Token,
    query=PageQuery,
    paged="tokens",
)
@translated
async def list_mine(request: Request, caller: Caller, query: PageQuery) -> Page[Token]:
    listed = [_shown(t) for t in await caller.accounts.list_tokens(caller.identity.name)]
    return Page.of(listed, lambda t: t.name, query)


@OPERATIONS.operation(
    "POST",
    MINE,
    summary="Make a personal access token; it is in this answer only",
    access=person,
    response=TokenCreated,
    status=201,
    body=NewToken,
    errors=[409],
)
@translated
async def add_mine(request: Request, caller: Caller, body: NewToken) -> TokenCreated:
    """The token acts as you, within its scopes and your roles as they stand at each
    use, until it expires or is revoked; it never acts as an admin or manages accounts.
    It does not end with your login session or your provider's tokens."""
    days = body.expires_days
    expires = datetime.now(UTC) + timedelta(days=days) if days is not None else None
    scopes = [(scope.namespace, scope.actions) for scope in body.scopes]
    token = await caller.accounts.add_token(caller.identity.name, body.name, scopes, expires)
    return TokenCreated(name=body.name, token=token, expires_at=expires)


@OPERATIONS.operation(
    "DELETE", MY_TOKEN, summary="Revoke one of your tokens", access=person, errors=[404]
)
@translated
async def remove_mine(request: Request, caller: Caller, token: str) -> None:
    await caller.accounts.remove_token(caller.identity.name, token)


@OPERATIONS.operation(
    "GET",
    THEIRS,
    summary="List a user's personal access tokens (admins)",
    access=admin,
    response=Token,
    query=PageQuery,
    paged="tokens",
    errors=[404],
)
@translated
async def list_theirs(request: Request, caller: Caller, user: str, query: PageQuery) -> Page[Token]:
    listed = [_shown(t) for t in await caller.accounts.list_tokens(user)]
    return Page.of(listed, lambda t: t.name, query)


@OPERATIONS.operation(
    "DELETE", THEIR_TOKEN, summary="Revoke a user's token (admins)", access=admin, errors=[404]
)
@translated
async def remove_theirs(request: Request, caller: Caller, user: str, token: str) -> None:
    await caller.accounts.remove_token(user, token)
