"""The route table of the distribution API."""

from __future__ import annotations

from starlette.routing import Route

from registry.api import base, blobs, manifests, referrers, tags, uploads

# Order matters where patterns overlap: the uploads routes precede the blob route.
ROUTES = [
    Route("/v2/", base.version_check, methods=["GET"]),
    Route("/v2/_catalog", tags.catalog, methods=["GET"]),
    Route("/v2/{name:path}/tags/list", tags.tags_list, methods=["GET"]),
    Route(
        "/v2/{name:path}/manifests/{reference}",
        manifests.manifest,
        methods=["GET", "PUT", "DELETE"],
    ),
    Route("/v2/{name:path}/blobs/uploads/", uploads.start, methods=["POST"]),
    Route(
        "/v2/{name:path}/blobs/uploads/{upload_id}",
        uploads.session,
        methods=["GET", "PATCH", "PUT", "DELETE"],
    ),
    Route("/v2/{name:path}/blobs/{digest}", blobs.blob, methods=["GET", "DELETE"]),
    Route("/v2/{name:path}/referrers/{digest}", referrers.referrers, methods=["GET"]),
]
