"""/v2/<name>/manifests/<reference>: GET, HEAD, PUT and DELETE."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.api import urls
from registry.api.access import may_push
from registry.api.common import repository, source
from registry.errors import Denied, ManifestTooLarge, ManifestUnknown
from registry.names import is_reference, namespace_of
from registry.requests import registry_of, small_body


def _existing(request: Request) -> str:
    """The reference of a manifest to read or delete: neither a tag nor a digest names no
    manifest, so not found, as Distribution answers (a PUT says TAG_INVALID or
    DIGEST_INVALID instead)."""
    reference: str = request.path_params["reference"]
    if not is_reference(reference):
        raise ManifestUnknown(
            {"reference": reference[:200]},
            message=f"{reference[:200]!r} is neither a tag nor a digest, so no manifest has it",
        )
    return reference


async def get_manifest(request: Request) -> Response:
    """GET and HEAD: from the index here, or from the mirror's upstream."""
    name, reference = repository(request), _existing(request)
    registry = registry_of(request)
    accept = request.headers.getlist("accept")
    found = await source(request).manifest(name, reference, accept)
    if found.unsigned is not None:
        # Enforce protects those who pull. Who may push here may read it too: they
        # control its content already, and must read an image to sign it (cosign GETs
        # it with a pull-only token first).
        refused = found.unsigned == "enforce" and not await may_push(request, name)
        registry.pulls.unsigned(found, name, reference, refused)
        if refused:
            namespace = namespace_of(name)
            raise Denied(
                {"reference": reference[:200], "digest": found.digest},
                message=f"{name}@{found.digest} is signed by no key that namespace "
                f"{namespace!r} trusts, and its signature policy is enforce: sign it "
                "(cosign sign --key <key> <image>@<digest>) with a key its owners or the "
                "registry's admins added (/api/v1/trust/keys)",
            )
    headers = {
        "Docker-Content-Digest": found.digest,
        "ETag": f'"{found.digest}"',
        "Content-Length": str(len(found.content)),
    }
    if request.method == "HEAD":
        body = b""
    else:
        body = found.content
        registry.pulls.record(found, name, reference)
    return Response(body, headers=headers, media_type=found.media_type)


async def delete_manifest(request: Request) -> Response:
    name, reference = repository(request), _existing(request)
    await registry_of(request).manifests.delete(name, reference)
    return Response(status_code=202, headers={"Content-Length": "0"})


async def put_manifest(request: Request) -> Response:
    name, reference = repository(request), request.path_params["reference"]
    registry = registry_of(request)
    body = await _read_limited(request, registry.settings.manifest_max_bytes)
    pushed = await registry.manifests.put(
        name,
        reference,
        body,
        request.headers.get("content-type"),
        request.query_params.getlist("tag"),
    )
    headers = {
        "Location": urls.manifest(name, str(pushed.digest)),
        "Docker-Content-Digest": str(pushed.digest),
        "Content-Length": "0",
    }
    # A cosign signature: which trusted keys signed its subject (services/trust.py).
    await registry.trust.arrived(name, str(pushed.digest), body, pushed.tags, pushed.subject)
    if pushed.subject:
        headers["OCI-Subject"] = pushed.subject
    response = Response(status_code=201, headers=headers)
    for tag in pushed.tags:
        if tag != reference:
            response.headers.append("OCI-Tag", tag)
    return response


async def _read_limited(request: Request, limit: int) -> bytes:
    too_large = ManifestTooLarge(
        {"limit": limit}, message=f"manifest is larger than the limit of {limit} bytes"
    )
    body = await small_body(request, limit)
    if body is None:
        raise too_large
    return body
