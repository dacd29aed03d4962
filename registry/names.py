"""Repository names and tags, validated against the distribution-spec grammar."""

from __future__ import annotations

import re

from registry.digest import Digest
from registry.errors import DigestInvalid, NameInvalid, TagInvalid

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_COMPONENT = re.compile(_COMPONENT)
_NAME = re.compile(f"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255


def check_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
        raise NameInvalid({"name": name[:300]}, message=f"invalid repository name {name[:300]!r}")
    return name


def check_namespace(namespace: str) -> str:
    """A namespace is one name component."""
    if len(namespace) > MAX_NAME_LENGTH or not NAME_COMPONENT.fullmatch(namespace):
        raise NameInvalid(
            {"namespace": namespace[:300]}, message=f"invalid namespace {namespace[:300]!r}"
        )
    return namespace


def check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise TagInvalid({"tag": tag[:300]}, message=f"invalid tag {tag[:300]!r}")
    return tag


def is_reference(reference: str) -> bool:
    """Whether a manifest reference is a valid tag or digest, so that it can name one."""
    if _TAG.fullmatch(reference):
        return True
    try:
        Digest.parse(reference)
    except DigestInvalid:
        return False
    return True


def namespace_of(name: str) -> str:
    """The namespace is the first path component; single-component names are `library`'s."""
    return name.split("/", 1)[0] if "/" in name else "library"
