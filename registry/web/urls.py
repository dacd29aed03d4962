"""The console's paths, built in one place (its routes are in web/routes.py). Names
are checked before they get here; a tag is quoted, as a path segment."""

from __future__ import annotations

from urllib.parse import quote


def tags(name: str) -> str:
    return f"/ui/r/{name}/-/tags"


def delete_tag(name: str, tag: str) -> str:
    return f"/ui/r/{name}/-/tags/{quote(tag)}/delete"


def delete_manifest(name: str, digest: str) -> str:
    return f"/ui/r/{name}/-/manifests/{digest}/delete"


def delete_repository(name: str) -> str:
    return f"/ui/r/{name}/-/delete"


def namespace(name: str) -> str:
    return f"/ui/namespaces/{quote(name)}"
