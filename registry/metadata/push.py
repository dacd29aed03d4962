"""A manifest push on PostgreSQL: one call of registry_push_manifest(), the function
migration 0028 installs, which PostgreSQL runs and commits as one statement. It holds
the statements services/manifests.py's program runs on SQLite, in the same order of
row locks; tests/api/test_push_rules.py keeps the two to the same rules.

As a program of statements it was a dozen round trips with the transaction open: under
16 pushing clients the backends sat idle in transaction, holding the repository's row,
while their workers were busy with other requests (benchmarks/README.md, 2026-12-04)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from registry.mediatypes import ParsedManifest
from registry.metadata import events
from registry.metadata.database import Database
from registry.metadata.statements import Statement, write_returning

_PARAMETERS = (
    "namespace",
    "repository",
    "pushed",
    "owner",
    "namespace_event",
    "digest",
    "media_type",
    "artifact_type",
    "size",
    "subject",
    "config_digest",
    "annotations",
    "content",
    "now",
    "untagged_at",
    "check",
    "blobs",
    "children",
    "references",
    "kinds",
    "lease_end",
    "tags",
    "immutable",
    "rules",
    "events",
    "tag_events",
    "previous",
)
PUSH = Statement(
    "push_manifest",
    f"SELECT registry_push_manifest({', '.join(':' + name for name in _PARAMETERS)})",
)
# The SQLSTATEs it refuses with (the migration says when).
_MISSING, _IMMUTABLE = "RGM01", "RGT01"


class ReferenceMissing(Exception):
    """A blob or child manifest the manifest lists is not in the repository."""

    def __init__(self, digest: str) -> None:
        super().__init__(digest)
        self.digest = digest


class ImmutableTagMoved(Exception):
    """An immutable tag points at another manifest."""

    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.tag = tag


@dataclass(frozen=True, slots=True)
class Push:
    namespace: str
    repository: str
    digest: str
    body: bytes
    parsed: ParsedManifest
    untagged_at: datetime | None
    lease_end: datetime
    tags: list[str]  # unique
    references: list[tuple[str, str]]  # (digest, "blob" or "manifest")
    events: list[dict[str, Any]]  # rows (events.event): a push by tag, or one by digest
    # By tag: the row of its move's event, with `previous` where the digest it pointed
    # at goes (known in the database only).
    tag_events: list[dict[str, Any]]
    previous: str
    pushed: bool  # a client's (not the mirror's): makes its namespace, keeps the rules
    check: bool  # what it references must be in the repository
    owner: str | None = None
    namespace_event: dict[str, Any] | None = None


async def push(db: Database, p: Push, rules: str | None, immutable: list[bool]) -> str | None:
    """Store the manifest, its references, tags and events; None. `rules`: the
    namespace's immutable-tag rules (JSON as stored) that `immutable` was matched
    against (None: no tag is immutable, as for the mirror); if they are not the rules
    now, nothing is written and they are returned."""
    parsed = p.parsed
    step = PUSH(
        namespace=p.namespace,
        repository=p.repository,
        pushed=p.pushed,
        owner=p.owner,
        namespace_event=events.as_json(p.namespace_event),
        digest=p.digest,
        media_type=parsed.media_type,
        artifact_type=parsed.artifact_type,
        size=len(p.body),
        subject=parsed.subject,
        config_digest=parsed.config,
        annotations=json.dumps(parsed.annotations) if parsed.annotations else None,
        content=p.body,
        untagged_at=p.untagged_at,
        check=p.check,
        blobs=sorted(set(parsed.blobs)),
        children=sorted({c.digest for c in parsed.children}),
        references=[d for d, _ in p.references],
        kinds=[k for _, k in p.references],
        lease_end=p.lease_end,
        tags=p.tags,
        immutable=immutable,
        rules=rules,
        events=events.as_json(p.events),
        tag_events=events.as_json(p.tag_events),
        previous=p.previous,
    )
    try:
        found = await write_returning(db, step)
    except Exception as exc:
        state = getattr(exc, "sqlstate", None)
        if state == _MISSING:
            raise ReferenceMissing(exc.detail) from None  # type: ignore[attr-defined]
        if state == _IMMUTABLE:
            raise ImmutableTagMoved(exc.detail) from None  # type: ignore[attr-defined]
        raise
    changed: str | None = found[0][0]
    return changed
