"""The route table: each /v2/ route with the action it needs per method, and the admin
API of /api/v1/, put together from the operations its modules declare."""

from __future__ import annotations

from starlette.routing import Route

from registry.api import (
    accounts,
    audit,
    base,
    blobs,
    groups,
    lifecycle,
    manifests,
    me,
    metrics,
    mirror,
    referrers,
    remotes,
    replication,
    repositories,
    tags,
    token,
    tokens,
    trust,
    uploads,
    urls,
    webhooks,
)
from registry.api.access import CATALOG_SCOPE, protect, require
from registry.api.declare import Api, openapi
from registry.auth.scopes import DELETE, PULL, PUSH

ADMIN_API = Api(
    title="Registry admin API",
    version="1",
    parts=[
        accounts.OPERATIONS,
        tokens.OPERATIONS,
        groups.OPERATIONS,
        audit.OPERATIONS,
        lifecycle.OPERATIONS,
        me.OPERATIONS,
        mirror.OPERATIONS,
        repositories.OPERATIONS,
        remotes.OPERATIONS,
        replication.OPERATIONS,
        trust.OPERATIONS,
        webhooks.OPERATIONS,
    ],
)

# One route per method (HEAD comes with GET), each with the action it needs. Routes are
# tried in order: the pulls come first, since most requests are theirs. No two patterns
# match one path (a digest or upload id has no slash; the uploads end in one).
ROUTES = [
    Route(urls.MANIFEST, protect(manifests.get_manifest, PULL), methods=["GET"]),
    Route(urls.BLOB, protect(blobs.get_blob, PULL), methods=["GET"]),
    Route("/v2/", require(base.version_check, None), methods=["GET"]),
    Route("/v2/_catalog", require(tags.catalog, CATALOG_SCOPE), methods=["GET"]),
    Route("/v2/{name:path}/tags/list", protect(tags.tags_list, PULL), methods=["GET"]),
    Route(urls.MANIFEST, protect(manifests.put_manifest, PUSH), methods=["PUT"]),
    Route(urls.MANIFEST, protect(manifests.delete_manifest, DELETE), methods=["DELETE"]),
    Route(urls.UPLOADS, protect(uploads.start, PUSH), methods=["POST"]),
    Route(urls.UPLOAD, protect(uploads.status, PUSH), methods=["GET"]),
    Route(urls.UPLOAD, protect(uploads.append, PUSH), methods=["PATCH"]),
    Route(urls.UPLOAD, protect(uploads.finish, PUSH), methods=["PUT"]),
    Route(urls.UPLOAD, protect(uploads.cancel, PUSH), methods=["DELETE"]),
    Route(urls.BLOB, protect(blobs.delete_blob, DELETE), methods=["DELETE"]),
    Route(
        "/v2/{name:path}/referrers/{digest}",
        protect(referrers.referrers, PULL),
        methods=["GET"],
    ),
    Route("/token", token.token, methods=["GET", "POST"]),
    Route("/health", base.health, methods=["GET"]),
    Route("/ready", base.ready, methods=["GET"]),
    Route("/metrics", metrics.metrics, methods=["GET"]),
    Route("/api/v1/openapi.json", openapi(ADMIN_API), methods=["GET"]),
    *ADMIN_API.routes(),
]
