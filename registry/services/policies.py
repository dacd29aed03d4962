"""Namespace policies: immutable-tag rules, a retention policy and a quota, set through
/api/v1/namespaces/<ns>/policy and kept in the database (one row per namespace).

- Immutable tags: glob patterns (`v*`, `release-*`); a push that would move such a tag
  to another manifest, or a delete of it (or of the manifest it points at), is refused
  with 409 DENIED naming the rule. Owners add rules; removing one takes an admin.
- Retention (services/retention.py applies it): which tags of each repository go.
- Quota: bytes the namespace may hold; only admins set it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from registry.errors import Denied, Invalid, TagImmutable
from registry.metadata import events
from registry.metadata import policies as q
from registry.metadata.database import Database
from registry.metadata.policies import StoredPolicy
from registry.names import check_namespace

_MAX_PATTERNS = 100
_MAX_PATTERN = 128


@dataclass(frozen=True)
class Retention:
    """Tags of each repository that retention deletes: those that no `keep_tags` pattern
    and no immutable rule keeps, that are not among the `keep_last` pushed most recently,
    and (with `older_than_days`) that were pushed longer ago than that. Manifests left
    without a tag go with them, their referrers and platform children too."""

    keep_last: int | None = None
    keep_tags: tuple[str, ...] = ()
    older_than_days: float | None = None

    def keeps(self, tag: str) -> bool:
        return any(fnmatchcase(tag, pattern) for pattern in self.keep_tags)


SIGNATURE_POLICIES = ("off", "audit", "enforce")


@dataclass(frozen=True)
class Policy:
    namespace: str
    immutable_tags: tuple[str, ...] = ()
    retention: Retention | None = None
    quota_bytes: int | None = None
    # off, audit (unsigned pulls served and recorded) or enforce (refused)
    signature_policy: str = "off"

    def immutable_rule(self, tag: str) -> str | None:
        """The first immutable-tag pattern that covers `tag`, if any."""
        return next((p for p in self.immutable_tags if fnmatchcase(tag, p)), None)

    def to_json(self) -> dict[str, Any]:
        retention = None
        if self.retention is not None:
            retention = {**asdict(self.retention), "keep_tags": list(self.retention.keep_tags)}
        return {
            "namespace": self.namespace,
            "immutable_tags": list(self.immutable_tags),
            "retention": retention,
            "quota_bytes": self.quota_bytes,
            "signature_policy": self.signature_policy,
        }


def from_stored(namespace: str, stored: StoredPolicy | None) -> Policy:
    if stored is None:
        return Policy(namespace)
    retention = None
    if stored.retention is not None:
        raw = json.loads(stored.retention)
        retention = Retention(
            keep_last=raw.get("keep_last"),
            keep_tags=tuple(raw.get("keep_tags") or ()),
            older_than_days=raw.get("older_than_days"),
        )
    return Policy(
        namespace,
        immutable_tags=tuple(json.loads(stored.immutable_tags)),
        retention=retention,
        quota_bytes=stored.quota_bytes,
        signature_policy=stored.signature_policy,
    )


def _patterns(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise Invalid({"field": key}, message=f"{key!r} must be a list of tag patterns")
    if len(value) > _MAX_PATTERNS:
        raise Invalid({"field": key}, message=f"{key!r} has more than {_MAX_PATTERNS} patterns")
    for pattern in value:
        if not pattern or len(pattern) > _MAX_PATTERN or not pattern.isprintable():
            raise Invalid(
                {"field": key},
                message=f"{key!r}: a pattern is 1 to {_MAX_PATTERN} printable characters",
            )
    return tuple(dict.fromkeys(value))


def _number(value: Any, key: str, *, integer: bool, low: float) -> Any:
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < low or value > 1e12:
        what = "an integer" if integer else "a number"
        raise Invalid({"field": key}, message=f"{key!r} must be {what} of at least {low:g}")
    return value


def parse_retention(value: Any) -> Retention | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Invalid({"field": "retention"}, message="'retention' must be an object or null")
    unknown = set(value) - {"keep_last", "keep_tags", "older_than_days"}
    if unknown:
        raise Invalid(
            {"field": "retention"},
            message=f"'retention' has unknown keys {sorted(unknown)}: use keep_last, "
            "keep_tags, older_than_days",
        )
    retention = Retention(
        keep_last=_number(value.get("keep_last"), "keep_last", integer=True, low=0),
        keep_tags=_patterns(value.get("keep_tags", []), "keep_tags"),
        older_than_days=_number(
            value.get("older_than_days"), "older_than_days", integer=False, low=0.000001
        ),
    )
    if retention.keep_last is None and retention.older_than_days is None:
        raise Invalid(
            {"field": "retention"},
            message="a retention policy needs keep_last or older_than_days (or both): "
            "without either it would delete nothing",
        )
    return retention


async def policy_in(conn: AsyncConnection, namespace: str) -> Policy:
    """The namespace's policy, read in the caller's transaction."""
    return from_stored(namespace, await q.policy(conn, namespace))


def refuse_immutable(policy: Policy, tags: list[str], doing: str) -> None:
    """TagImmutable for the first of `tags` an immutable rule covers."""
    for tag in tags:
        rule = policy.immutable_rule(tag)
        if rule is not None:
            raise TagImmutable(
                {"tag": tag, "rule": rule},
                message=f"tag {tag!r} is immutable (rule {rule!r} of namespace "
                f"{policy.namespace!r}): it cannot be {doing}; an admin can lift the rule",
            )


class Policies:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, namespace: str) -> Policy:
        async with self.db.read() as conn:
            return from_stored(namespace, await q.policy(conn, namespace))

    async def update(self, namespace: str, changes: dict[str, Any], *, admin: bool) -> Policy:
        """Apply the fields of `changes` (immutable_tags, retention, quota_bytes); an
        owner may not set the quota nor remove an immutable rule."""
        check_namespace(namespace)
        unknown = set(changes) - {"immutable_tags", "retention", "quota_bytes", "signature_policy"}
        if unknown:
            raise Invalid(
                message=f"unknown fields {sorted(unknown)}: use immutable_tags, retention, "
                "quota_bytes, signature_policy",
            )
        async with self.db.write() as conn:
            current = from_stored(namespace, await q.policy(conn, namespace))
            updated = current
            if "immutable_tags" in changes:
                patterns = _patterns(changes["immutable_tags"], "immutable_tags")
                lifted = set(current.immutable_tags) - set(patterns)
                if lifted and not admin:
                    raise Denied(
                        message=f"only an admin may lift immutable-tag rules "
                        f"({', '.join(sorted(lifted))})",
                    )
                updated = replace(updated, immutable_tags=patterns)
            if "retention" in changes:
                updated = replace(updated, retention=parse_retention(changes["retention"]))
            if "quota_bytes" in changes:
                if not admin:
                    raise Denied(message="only an admin may set a namespace's quota")
                quota = _number(changes["quota_bytes"], "quota_bytes", integer=True, low=0)
                updated = replace(updated, quota_bytes=quota)
            if "signature_policy" in changes:
                chosen = changes["signature_policy"]
                if chosen not in SIGNATURE_POLICIES:
                    raise Invalid(
                        {"field": "signature_policy"},
                        message="signature_policy: off, audit (unsigned pulls served and "
                        "recorded) or enforce (refused)",
                    )
                updated = replace(updated, signature_policy=chosen)
            document = updated.to_json()
            await q.save_policy(
                conn,
                StoredPolicy(
                    namespace,
                    json.dumps(document["immutable_tags"]),
                    None if updated.retention is None else json.dumps(document["retention"]),
                    updated.quota_bytes,
                    updated.signature_policy,
                ),
            )
            await events.record(
                conn,
                "policy.update",
                namespace=namespace,
                detail={key: document.get(key) for key in changes},
            )
        return updated
