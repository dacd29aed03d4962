"""The storage lifecycle's /api/v1/ endpoints: a namespace's policy (immutable-tag rules,
retention, quota; GET and PATCH), usage (of the registry for admins, of a namespace for
its owners and admins) and garbage collection's state (admins). With authentication on,
only admins set quotas or lift immutable rules."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.access import require_admin, require_owner
from registry.api.common import json_object, registry_of
from registry.names import check_namespace

_MAX_BODY = 64 * 1024


async def policy(request: Request) -> JSONResponse:
    namespace = check_namespace(request.path_params["namespace"])
    registry = registry_of(request)
    admin = await require_owner(request, namespace)
    if request.method == "PATCH":
        changes = await json_object(request, _MAX_BODY)
        found = await registry.policies.update(namespace, changes, admin=admin)
    else:
        found = await registry.policies.get(namespace)
    return JSONResponse(found.to_json())


async def namespace_usage(request: Request) -> JSONResponse:
    namespace = check_namespace(request.path_params["namespace"])
    await require_owner(request, namespace)
    return JSONResponse(await registry_of(request).usage.namespace(namespace))


async def usage(request: Request) -> JSONResponse:
    await require_admin(request, "read the registry's usage")
    return JSONResponse(await registry_of(request).usage.overall())


async def gc_status(request: Request) -> JSONResponse:
    await require_admin(request, "read garbage collection's state")
    return JSONResponse(await registry_of(request).gc.status())
