"""The route table: each /v2/ route with the action it needs per method."""

from __future__ import annotations

from starlette.routing import Route

from registry.api import (  # the /api/v1/ modules declare their operations on import
    accounts,  # noqa: F401
    audit,  # noqa: F401
    base,
    blobs,
    lifecycle,  # noqa: F401
    manifests,
    me,  # noqa: F401
    metrics,
    mirror,  # noqa: F401
    referrers,
    repositories,  # noqa: F401
    tags,
    token,
    uploads,
    webhooks,  # noqa: F401
)
from registry.api.access import CATALOG_SCOPE, protect, require
from registry.api.declare import API, openapi
from registry.auth.scopes import DELETE, PULL, PUSH

# Order matters where patterns overlap: the uploads routes precede the blob route.
ROUTES = [
    Route("/v2/", require(base.version_check, None), methods=["GET"]),
    Route("/v2/_catalog", require(tags.catalog, CATALOG_SCOPE), methods=["GET"]),
    Route("/v2/{name:path}/tags/list", protect(tags.tags_list, GET=PULL), methods=["GET"]),
    Route(
        "/v2/{name:path}/manifests/{reference}",
        protect(manifests.manifest, GET=PULL, PUT=PUSH, DELETE=DELETE),
        methods=["GET", "PUT", "DELETE"],
    ),
    Route("/v2/{name:path}/blobs/uploads/", protect(uploads.start, POST=PUSH), methods=["POST"]),
    Route(
        "/v2/{name:path}/blobs/uploads/{upload_id}",
        protect(uploads.session, GET=PUSH, PATCH=PUSH, PUT=PUSH, DELETE=PUSH),
        methods=["GET", "PATCH", "PUT", "DELETE"],
    ),
    Route(
        "/v2/{name:path}/blobs/{digest}",
        protect(blobs.blob, GET=PULL, DELETE=DELETE),
        methods=["GET", "DELETE"],
    ),
    Route(
        "/v2/{name:path}/referrers/{digest}",
        protect(referrers.referrers, GET=PULL),
        methods=["GET"],
    ),
    Route("/token", token.token, methods=["GET", "POST"]),
    Route("/health", base.health, methods=["GET"]),
    Route("/ready", base.ready, methods=["GET"]),
    Route("/metrics", metrics.metrics, methods=["GET"]),
    Route("/api/v1/openapi.json", openapi, methods=["GET"]),
    *API.routes(),
]
