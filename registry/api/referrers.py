"""GET /v2/<name>/referrers/<digest>: the manifests whose subject is <digest>."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.common import digest_param, repository
from registry.mediatypes import OCI_INDEX
from registry.requests import registry_of


async def referrers(request: Request) -> JSONResponse:
    name, subject = repository(request), digest_param(request)
    artifact_type = request.query_params.get("artifactType")
    index = await registry_of(request).manifests.referrers(name, subject, artifact_type)
    headers: dict[str, str] = {}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    return JSONResponse(index, headers=headers, media_type=OCI_INDEX)
