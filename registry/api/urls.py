"""The /v2/ paths the registry answers with (Location headers), built in one place
from the same patterns as the route table (api/routes.py)."""

from __future__ import annotations

MANIFEST = "/v2/{name:path}/manifests/{reference}"
UPLOADS = "/v2/{name:path}/blobs/uploads/"
UPLOAD = "/v2/{name:path}/blobs/uploads/{upload_id}"
BLOB = "/v2/{name:path}/blobs/{digest}"


def manifest(name: str, reference: str) -> str:
    return f"/v2/{name}/manifests/{reference}"


def upload(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def blob(name: str, digest: object) -> str:
    return f"/v2/{name}/blobs/{digest}"
