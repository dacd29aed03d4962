"""/api/v1/me: who the caller is, as the registry sees them, and what they may read."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from starlette.requests import Request

from registry.api.access import authorize, caller_identity
from registry.api.declare import Answer, Operations
from registry.requests import registry_of

OPERATIONS = Operations(tag="accounts")


class Role(Answer):
    namespace: str = Field(description="empty: admin, everywhere")
    role: str
    group: str | None = Field(description="the group it comes through; null: a membership")


class Me(Answer):
    name: str = Field(description="empty for an anonymous caller")
    kind: Literal["user", "robot", "anonymous"]
    admin: bool
    authentication: bool = Field(description="false: the registry is open to everyone")
    namespaces: list[str] | None = Field(
        description="the namespaces the caller may pull from; null: all of them"
    )
    groups: list[str] = Field(
        [], description="the groups the user's directory or provider gave at their last login"
    )
    roles: list[Role] = Field([], description="each role the user holds, and where it comes from")


@OPERATIONS.operation("GET", "/api/v1/me", summary="The caller", response=Me)
async def me(request: Request) -> Me:
    await authorize(request, None)
    identity = await caller_identity(request)
    auth = registry_of(request).auth
    readable = None if auth is None else await auth.accounts.readable_namespaces(identity)
    groups: list[str] = []
    roles: list[Role] = []
    if auth is not None and identity.kind == "user":
        groups, held = await auth.accounts.roles_of(identity.name)
        roles = [Role(namespace=ns, role=role, group=group) for ns, role, group in held]
    return Me(
        name=identity.name,
        kind=identity.kind,
        admin=identity.admin,
        authentication=auth is not None,
        namespaces=None if readable is None else sorted(readable),
        groups=groups,
        roles=roles,
    )
