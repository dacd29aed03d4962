"""/api/v1/remotes: the other registries replication copies to or from. Admins keep the
registry's remotes; a namespace's owners keep its own (which may not be the registry's
own network, replication/remotes.py). A remote is checked when it is made, and by
POST .../test; its password is never shown again."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field
from starlette.requests import Request

from registry.api.accounts import Caller, admin, owner
from registry.api.declare import Answer, Body, Operations, Page, PageQuery
from registry.replication.remotes import RemoteInfo
from registry.requests import registry_of

OPERATIONS = Operations(tag="replication")


class NewRemote(Body):
    name: str = Field(description="unique among the namespace's (or the registry's) remotes")
    url: str = Field(description="the registry's root: https://host[:port]")
    username: str | None = None
    password: str | None = Field(None, description="kept sealed; never shown again")
    verify_tls: bool = True
    ca_pem: str | None = Field(None, description="CA certificates (PEM) for the remote's TLS")


class Remote(Answer):
    namespace: str = Field(description="empty: the registry's, for every namespace")
    name: str
    url: str
    username: str | None
    has_password: bool
    verify_tls: bool
    has_ca: bool
    created_at: datetime


def _shown(info: RemoteInfo) -> Remote:
    return Remote(
        namespace=info.namespace,
        name=info.name,
        url=info.url,
        username=info.username,
        has_password=info.has_password,
        verify_tls=info.verify_tls,
        has_ca=info.has_ca,
        created_at=info.created_at,
    )


async def _listed(request: Request, namespace: str, query: PageQuery) -> Page[Remote]:
    listed = [_shown(r) for r in await registry_of(request).remotes.listed(namespace)]
    return Page.of(listed, lambda r: r.name, query)


async def _add(request: Request, namespace: str, body: NewRemote) -> Remote:
    info = await registry_of(request).remotes.add(
        namespace,
        body.name,
        body.url,
        username=body.username,
        password=body.password,
        verify_tls=body.verify_tls,
        ca_pem=body.ca_pem,
    )
    return _shown(info)


async def _test(request: Request, namespace: str, remote: str) -> None:
    remotes = registry_of(request).remotes
    await remotes.check(await remotes.endpoint(namespace, remote))


ALL = "/api/v1/remotes"
ONE = "/api/v1/remotes/{remote}"
TEST = "/api/v1/remotes/{remote}/test"
IN_NAMESPACE = "/api/v1/namespaces/{namespace}/remotes"
ONE_IN_NAMESPACE = "/api/v1/namespaces/{namespace}/remotes/{remote}"
TEST_IN_NAMESPACE = "/api/v1/namespaces/{namespace}/remotes/{remote}/test"


@OPERATIONS.operation(
    "GET",
    ALL,
    summary="List the registry's remotes (admins)",
    access=admin,
    response=Remote,
    query=PageQuery,
    paged="remotes",
)
async def list_remotes(request: Request, caller: Caller, query: PageQuery) -> Page[Remote]:
    return await _listed(request, "", query)


@OPERATIONS.operation(
    "POST",
    ALL,
    summary="Add a remote for every namespace, once it answers (admins)",
    access=admin,
    response=Remote,
    status=201,
    body=NewRemote,
    errors=[409],
)
async def add_remote(request: Request, caller: Caller, body: NewRemote) -> Remote:
    """400 says what failed: the URL, the host, TLS or the credentials."""
    return await _add(request, "", body)


@OPERATIONS.operation(
    "POST", TEST, summary="Check a remote again (admins)", access=admin, errors=[404]
)
async def test_remote(request: Request, caller: Caller, remote: str) -> None:
    await _test(request, "", remote)


@OPERATIONS.operation(
    "DELETE", ONE, summary="Remove a remote (admins)", access=admin, errors=[404, 409]
)
async def remove_remote(request: Request, caller: Caller, remote: str) -> None:
    await registry_of(request).remotes.remove("", remote)


@OPERATIONS.operation(
    "GET",
    IN_NAMESPACE,
    summary="List a namespace's remotes (owners)",
    access=owner,
    response=Remote,
    query=PageQuery,
    paged="remotes",
    errors=[404],
)
async def list_namespace_remotes(
    request: Request, caller: Caller, namespace: str, query: PageQuery
) -> Page[Remote]:
    return await _listed(request, namespace, query)


@OPERATIONS.operation(
    "POST",
    IN_NAMESPACE,
    summary="Add a remote for a namespace, once it answers (owners)",
    access=owner,
    response=Remote,
    status=201,
    body=NewRemote,
    errors=[404, 409],
)
async def add_namespace_remote(
    request: Request, caller: Caller, namespace: str, body: NewRemote
) -> Remote:
    """Not the registry's own network (loopback, private, link-local) unless
    replication.allow_private_targets is on."""
    return await _add(request, namespace, body)


@OPERATIONS.operation(
    "POST",
    TEST_IN_NAMESPACE,
    summary="Check a namespace's remote again (owners)",
    access=owner,
    errors=[404],
)
async def test_namespace_remote(
    request: Request, caller: Caller, namespace: str, remote: str
) -> None:
    await _test(request, namespace, remote)


@OPERATIONS.operation(
    "DELETE",
    ONE_IN_NAMESPACE,
    summary="Remove a namespace's remote (owners)",
    access=owner,
    errors=[404, 409],
)
async def remove_namespace_remote(
    request: Request, caller: Caller, namespace: str, remote: str
) -> None:
    await registry_of(request).remotes.remove(namespace, remote)
