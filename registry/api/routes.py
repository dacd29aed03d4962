"""The route table: each /v2/ route with the action it needs per method."""

from __future__ import annotations

from starlette.routing import Route

from registry.api import (
    accounts,
    base,
    blobs,
    lifecycle,
    manifests,
    mirror,
    referrers,
    repositories,
    tags,
    token,
    uploads,
)
from registry.api.access import CATALOG_SCOPE, protect, require
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
    Route("/metrics", mirror.metrics, methods=["GET"]),
    Route("/api/v1/mirror", mirror.status, methods=["GET"]),
    Route("/api/v1/gc", lifecycle.gc_status, methods=["GET"]),
    Route("/api/v1/usage", lifecycle.usage, methods=["GET"]),
    Route(
        "/api/v1/repositories/{name:path}",
        protect(repositories.delete_repository, DELETE=DELETE),
        methods=["DELETE"],
    ),
    Route("/api/v1/users", accounts.users, methods=["GET", "POST"]),
    Route("/api/v1/users/{user}", accounts.user, methods=["PATCH", "DELETE"]),
    Route("/api/v1/namespaces", accounts.namespaces, methods=["GET", "POST"]),
    Route("/api/v1/namespaces/{namespace}", accounts.namespace, methods=["PATCH", "DELETE"]),
    Route("/api/v1/namespaces/{namespace}/members", accounts.members, methods=["GET"]),
    Route("/api/v1/namespaces/{namespace}/policy", lifecycle.policy, methods=["GET", "PATCH"]),
    Route("/api/v1/namespaces/{namespace}/usage", lifecycle.namespace_usage, methods=["GET"]),
    Route(
        "/api/v1/namespaces/{namespace}/members/{user}",
        accounts.member,
        methods=["PUT", "DELETE"],
    ),
    Route("/api/v1/namespaces/{namespace}/robots", accounts.robots, methods=["GET", "POST"]),
    Route("/api/v1/namespaces/{namespace}/robots/{robot}", accounts.robot, methods=["DELETE"]),
]
