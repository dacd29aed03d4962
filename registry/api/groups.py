"""/api/v1/group-roles: roles that the members of a directory's (LDAP) or an OpenID
provider's (OIDC) groups hold. Admins map groups to any namespace role or to admin;
a namespace's owners map groups in their namespace.

A user's roles are the union of their memberships and their groups' roles, read from
the groups their source gave at their last login or token request. Mappings from the
settings (auth.group_roles) are listed with origin `config` and changed there only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from starlette.requests import Request

from registry.api.accounts import Caller, admin, owner, translated
from registry.api.declare import Answer, Body, Operations, Page, PageQuery
from registry.auth.accounts import GroupRoleRow
from registry.errors import Denied, NotFound

OPERATIONS = Operations(tag="accounts")

Source = Literal["ldap", "oidc"]


class NewGroupRole(Body):
    source: Source
    group: str = Field(description="an LDAP group's DN, or a value of the OIDC groups claim")
    role: str = Field(description="guest, developer, maintainer or owner; admin (admins only)")
    namespace: str = Field("", description="empty for admin")


class NewNamespaceGroupRole(Body):
    source: Source
    group: str
    role: str = Field(description="guest, developer, maintainer or owner")


class GroupRole(Answer):
    id: int
    source: str
    group: str
    namespace: str = Field(description="empty: the admin role, everywhere")
    role: str
    origin: Literal["config", "api"]


def _shown(row: GroupRoleRow) -> GroupRole:
    return GroupRole(
        id=row.id,
        source=row.source,
        group=row.group,
        namespace=row.namespace,
        role=row.role,
        origin="config" if row.origin == "config" else "api",
    )


ALL = "/api/v1/group-roles"
ONE = "/api/v1/group-roles/{role_id}"
IN_NAMESPACE = "/api/v1/namespaces/{namespace}/group-roles"
ONE_IN_NAMESPACE = "/api/v1/namespaces/{namespace}/group-roles/{role_id}"


@OPERATIONS.operation(
    "GET",
    ALL,
    summary="List every group role (admins)",
    access=admin,
    response=GroupRole,
    query=PageQuery,
    paged="group_roles",
)
@translated
async def list_all(request: Request, caller: Caller, query: PageQuery) -> Page[GroupRole]:
    listed = [_shown(row) for row in await caller.accounts.list_group_roles()]
    return Page.of(listed, lambda r: f"{r.id:012d}", query)


@OPERATIONS.operation(
    "PUT",
    ALL,
    summary="Give a group a role in a namespace, or admin (admins)",
    access=admin,
    body=NewGroupRole,
    errors=[404],
)
@translated
async def put_any(request: Request, caller: Caller, body: NewGroupRole) -> None:
    await caller.accounts.set_group_role(body.source, body.group, body.namespace, body.role)


@OPERATIONS.operation(
    "DELETE", ONE, summary="Remove a group role (admins)", access=admin, errors=[404, 409]
)
@translated
async def remove_any(request: Request, caller: Caller, role_id: str) -> None:
    await caller.accounts.remove_group_role(_id(role_id))


@OPERATIONS.operation(
    "GET",
    IN_NAMESPACE,
    summary="List the group roles of a namespace (owners)",
    access=owner,
    response=GroupRole,
    query=PageQuery,
    paged="group_roles",
    errors=[404],
)
@translated
async def list_in_namespace(
    request: Request, caller: Caller, namespace: str, query: PageQuery
) -> Page[GroupRole]:
    listed = [_shown(row) for row in await caller.accounts.list_group_roles(namespace)]
    return Page.of(listed, lambda r: f"{r.id:012d}", query)


@OPERATIONS.operation(
    "PUT",
    IN_NAMESPACE,
    summary="Give a group a role in a namespace (owners)",
    access=owner,
    body=NewNamespaceGroupRole,
    errors=[404],
)
@translated
async def put_in_namespace(
    request: Request, caller: Caller, namespace: str, body: NewNamespaceGroupRole
) -> None:
    if body.role == "admin":
        raise Denied(message="only an admin may give a group the admin role")
    await caller.accounts.set_group_role(body.source, body.group, namespace, body.role)


@OPERATIONS.operation(
    "DELETE",
    ONE_IN_NAMESPACE,
    summary="Remove a group role of a namespace (owners)",
    access=owner,
    errors=[404, 409],
)
@translated
async def remove_in_namespace(
    request: Request, caller: Caller, namespace: str, role_id: str
) -> None:
    await caller.accounts.remove_group_role(_id(role_id), namespace)


def _id(text: str) -> int:
    if not text.isdigit() or len(text) > 12:
        raise NotFound(message=f"no group role {text[:20]!r}")
    return int(text)
