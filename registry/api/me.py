"""/api/v1/me: who the caller is, as the registry sees them, and what they may read."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from starlette.requests import Request

from registry.api.access import authorize, caller_identity
from registry.api.declare import Answer, Operations
from registry.requests import registry_of

OPERATIONS = Operations(tag="accounts")


class Me(Answer):
    name: str = Field(description="empty for an anonymous caller")
    kind: Literal["user", "robot", "anonymous"]
    admin: bool
    authentication: bool = Field(description="false: the registry is open to everyone")
    namespaces: list[str] | None = Field(
        description="the namespaces the caller may pull from; null: all of them"
    )


@OPERATIONS.operation("GET", "/api/v1/me", summary="The caller", response=Me)
async def me(request: Request) -> Me:
    await authorize(request, None)
    identity = await caller_identity(request)
    auth = registry_of(request).auth
    readable = None if auth is None else await auth.accounts.readable_namespaces(identity)
    return Me(
        name=identity.name,
        kind=identity.kind,
        admin=identity.admin,
        authentication=auth is not None,
        namespaces=None if readable is None else sorted(readable),
    )
