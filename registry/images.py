"""What a stored manifest and its image config say about an image, for the browse API
and the console: sizes, platforms, layers, when it was built and how it runs.

Everything here reads documents that were validated when pushed, but whose strings (and
the config's, which is never validated) are the pusher's: the functions only pick
fields of the expected JSON types and drop the rest, and nothing here is ever markup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Config media types whose JSON is an image config (created, os, architecture, ...).
IMAGE_CONFIGS = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
# Configs larger than this are not read for a summary (history can be long, not this).
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Layer:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Platform:
    os: str | None
    architecture: str | None
    variant: str | None = None


@dataclass(frozen=True, slots=True)
class Child:
    """A manifest an index lists, with the platform the index gives it."""

    digest: str
    media_type: str
    size: int
    platform: Platform | None


@dataclass(frozen=True, slots=True)
class Contents:
    """What one manifest lists: an image's config and layers, or an index's children."""

    config: Layer | None = None
    layers: list[Layer] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)

    @property
    def image_bytes(self) -> int:
        """Config plus layers (an image's download, compressed)."""
        return (self.config.size if self.config else 0) + sum(x.size for x in self.layers)


@dataclass(frozen=True, slots=True)
class History:
    created: str | None
    created_by: str | None
    empty_layer: bool


@dataclass(frozen=True, slots=True)
class Config:
    """The parts of an image config a person looks at."""

    created: str | None = None
    platform: Platform | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)  # names only: values may be secrets
    labels: dict[str, str] = field(default_factory=dict)
    history: list[History] = field(default_factory=list)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _layer(value: Any) -> Layer | None:
    if not isinstance(value, dict):
        return None
    digest, size = value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool):
        return None
    return Layer(digest, _str(value.get("mediaType")) or "", size)


def _platform(value: Any) -> Platform | None:
    if not isinstance(value, dict):
        return None
    return Platform(
        _str(value.get("os")), _str(value.get("architecture")), _str(value.get("variant"))
    )


def _document(content: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(content)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def contents(content: bytes) -> Contents:
    """The config and layers, or the children, of a stored manifest."""
    doc = _document(content)
    layers = [x for x in map(_layer, doc.get("layers") or []) if x is not None]
    children = []
    for entry in doc.get("manifests") or []:
        found = _layer(entry)
        if found is not None and isinstance(entry, dict):
            platform = _platform(entry.get("platform"))
            children.append(Child(found.digest, found.media_type, found.size, platform))
    return Contents(_layer(doc.get("config")), layers, children)


def config(raw: bytes) -> Config:
    """The summary of an image config."""
    doc = _document(raw)
    found = doc.get("config")
    run: dict[str, Any] = found if isinstance(found, dict) else {}
    env = [item.split("=", 1)[0] for item in _strings(run.get("Env")) or []]
    labels_raw = run.get("Labels")
    labels = (
        {k: v for k, v in labels_raw.items() if isinstance(v, str)}
        if isinstance(labels_raw, dict)
        else {}
    )
    history = [
        History(_str(h.get("created")), _str(h.get("created_by")), h.get("empty_layer") is True)
        for h in doc.get("history") or []
        if isinstance(h, dict)
    ]
    platform = _platform(doc) if doc.get("os") or doc.get("architecture") else None
    return Config(
        created=_str(doc.get("created")),
        platform=platform,
        entrypoint=_strings(run.get("Entrypoint")),
        cmd=_strings(run.get("Cmd")),
        env=env,
        labels=labels,
        history=history,
    )
