"""What a namespace keeps, or the registry for every namespace: remotes, replication
rules, trusted keys. Each is named the same way and spoken of the same way."""

from __future__ import annotations

import re

from registry.errors import Invalid

_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


def check_kept_name(name: str) -> str:
    """A remote's, rule's or key's name: unique where it is kept, safe in any page."""
    if len(name) > 64 or not _NAME.fullmatch(name):
        raise Invalid(
            {"name": name[:80]},
            message="name: lower-case letters and digits, with . _ - between them, at most "
            "64 characters",
        )
    return name


def keeper(namespace: str) -> str:
    """Who keeps it, in words: a namespace, or (namespace empty) the registry."""
    return f"namespace {namespace!r}" if namespace else "the registry"
