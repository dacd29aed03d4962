"""Manifest media types: parsing, validation and what a manifest references."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry.digest import Digest
from registry.errors import ManifestInvalid
from registry.parse import DEFAULT_JSON_DEPTH, json_document

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1 = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
IMAGE_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
MANIFEST_TYPES = IMAGE_TYPES | INDEX_TYPES
# Content types that say nothing about the manifest; the body's mediaType decides.
_GENERIC = frozenset({"", "application/json", "application/octet-stream", "text/plain"})
# Layers that live elsewhere (Windows base layers): not required in the repository.
_FOREIGN_LAYERS = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


@dataclass
class ParsedManifest:
    media_type: str
    artifact_type: str | None = None
    subject: str | None = None
    config: str | None = None
    annotations: dict[str, str] | None = None
    blobs: list[str] = field(default_factory=list)
    children: list[Descriptor] = field(default_factory=list)


def base_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_manifest(
    body: bytes,
    content_type: str | None,
    *,
    max_depth: int = DEFAULT_JSON_DEPTH,
    max_descriptors: int = 10_000,
) -> ParsedManifest:
    """Validate a pushed manifest and extract what it references."""
    try:
        doc = json_document(body, max_depth)
    except ValueError as exc:
        raise ManifestInvalid(message=f"manifest rejected: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid(message="manifest must be a JSON object")

    declared = base_type(content_type)
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise ManifestInvalid(message="mediaType must be a string")
    if declared in SCHEMA1 or body_type in SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ManifestInvalid(
            message="Docker schema 1 manifests are not supported: push with a current client "
            "(Docker 1.10 or later) or convert the image to schema 2 or OCI"
        )
    if doc.get("schemaVersion") != 2:
        raise ManifestInvalid(message="schemaVersion must be 2")

    if declared in _GENERIC:
        media_type = body_type or _infer(doc)
    else:
        media_type = declared
        if body_type and body_type != declared:
            raise ManifestInvalid(
                message=f"Content-Type {declared!r} does not match the manifest's "
                f"mediaType {body_type!r}"
            )
    if media_type not in MANIFEST_TYPES:
        raise ManifestInvalid(message=f"unsupported manifest media type {media_type!r}")

    parsed = ParsedManifest(media_type=media_type)
    parsed.annotations = _annotations(doc.get("annotations"))
    if "subject" in doc:
        parsed.subject = _descriptor(doc["subject"], "subject").digest
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestInvalid(message="artifactType must be a string")

    listed = doc.get("layers" if media_type in IMAGE_TYPES else "manifests")
    if isinstance(listed, list) and len(listed) > max_descriptors:
        raise ManifestInvalid(
            {"descriptors": len(listed), "limit": max_descriptors},
            message=f"the manifest lists {len(listed)} descriptors; this registry takes at "
            f"most {max_descriptors} (limits.manifest_descriptors)",
        )
    if media_type in IMAGE_TYPES:
        if "config" not in doc:
            raise ManifestInvalid(message="an image manifest needs a config descriptor")
        config = _descriptor(doc["config"], "config")
        parsed.config = config.digest
        parsed.blobs.append(config.digest)
        for i, layer in enumerate(_list(doc, "layers", required=media_type == DOCKER_MANIFEST)):
            d = _descriptor(layer, f"layers[{i}]")
            if d.media_type in _FOREIGN_LAYERS and isinstance(layer.get("urls"), list):
                continue
            parsed.blobs.append(d.digest)
        # The referrers API reports the config's media type when artifactType is absent.
        parsed.artifact_type = artifact_type or config.media_type
    else:
        for i, child in enumerate(_list(doc, "manifests", required=True)):
            parsed.children.append(_descriptor(child, f"manifests[{i}]"))
        parsed.artifact_type = artifact_type
    return parsed


def _infer(doc: dict[str, Any]) -> str:
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc:
        return OCI_MANIFEST
    raise ManifestInvalid(message="cannot tell the manifest's media type: set Content-Type")


def _list(doc: dict[str, Any], key: str, *, required: bool) -> list[Any]:
    value = doc.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise ManifestInvalid(message=f"{key} must be a list of descriptors")
    return value


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestInvalid(message=f"{where} must be a descriptor object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(message=f"{where}.mediaType must be a non-empty string")
    if not isinstance(digest, str):
        raise ManifestInvalid(message=f"{where}.digest must be a string")
    Digest.parse(digest)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(message=f"{where}.size must be a non-negative integer")
    if "platform" in value and not isinstance(value["platform"], dict):
        raise ManifestInvalid(message=f"{where}.platform must be an object")
    return Descriptor(media_type, digest, size)


def _annotations(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ManifestInvalid(message="annotations must map strings to strings")
    return value


def accepts(accept: list[str], media_type: str) -> bool:
    """Whether a client's Accept values admit `media_type`. No Accept admits anything."""
    if not accept:
        return True
    for value in accept:
        for item in value.split(","):
            wanted = base_type(item)
            if wanted in ("*/*", media_type) or (
                wanted.endswith("/*") and media_type.startswith(wanted[:-1])
            ):
                return True
    return False
