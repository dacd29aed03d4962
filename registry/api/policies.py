"""/api/v1/namespaces/<ns>/policy: GET and PATCH a namespace's immutable-tag rules,
retention policy and quota (services/policies.py). With authentication on, a namespace's
owners and admins may; only admins set quotas or lift immutable rules."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.access import authorize, caller_identity
from registry.api.common import json_object, registry_of
from registry.errors import Denied, Unauthorized
from registry.names import check_namespace

_MAX_BODY = 64 * 1024


async def policy(request: Request) -> JSONResponse:
    namespace = check_namespace(request.path_params["namespace"])
    registry = registry_of(request)
    admin = True  # an open registry has no accounts to tell apart
    if registry.auth is not None:
        await authorize(request, None)
        identity = await caller_identity(request)
        if identity.anonymous:
            raise Unauthorized(message=f"log in as an owner of {namespace!r} or an admin")
        admin = identity.admin
        if not admin and await registry.auth.accounts.role(identity, namespace) != "owner":
            raise Denied(message=f"only an owner of {namespace!r} or an admin may do this")
    if request.method == "PATCH":
        changes = await json_object(request, _MAX_BODY)
        found = await registry.policies.update(namespace, changes, admin=admin)
    else:
        found = await registry.policies.get(namespace)
    return JSONResponse(found.to_json())
