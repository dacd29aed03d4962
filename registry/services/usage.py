"""Storage usage, like `docker system df`, and namespace quotas.

A namespace's usage counts each blob once, however many of its repositories link it; it
is kept exact by triggers as blobs are linked and unlinked (migration 0011), as deltas
that no push waits on, folded by garbage collection. A repository's bytes are those of the
blobs it links, summed when asked. A quota (services/policies.py) limits a namespace's
usage. A blob upload is linked only if the namespace stays within its quota, decided in
the upload's own transaction after taking the namespace's policy row (metadata/blobs.py),
so parallel pushes into a namespace with a quota take turns and cannot overshoot at all.
A refused upload counts nothing (its bytes are garbage, collected after their lease).
Manifests are small and are not refused; bytes still being uploaded count once they are
committed.
"""

from __future__ import annotations

from typing import Any

from registry.digest import Digest
from registry.errors import Denied
from registry.metadata import blobs, events
from registry.metadata import usage as q
from registry.metadata.database import Database
from registry.metadata.models import now
from registry.names import check_namespace, namespace_of


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError


class OverQuota(Denied):
    """A blob that would take its namespace past its quota."""


class Quotas:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def refuse_unless_linked(self, repository: str, digest: Digest, size: int) -> None:
        """After a link that changed no row: fine if the repository links the blob
        already, else it was over the quota."""
        async with self.db.read() as conn:
            if await blobs.size_in(conn, repository, str(digest)) is not None:
                return
            used, quota = await q.quota_state(conn, namespace_of(repository))
        raise self.over(namespace_of(repository), used, quota or 0, size)

    async def record_refusal(
        self, repository: str, refused: OverQuota, target: dict[str, Any]
    ) -> None:
        """The quota event of a refused push (its own transaction: the push's is gone)."""
        async with self.db.write() as conn:
            await events.record(
                conn,
                "quota",
                repository=repository,
                target=target,
                outcome="denied",
                detail=refused.detail,
            )

    async def allows(self, conn: Any, namespace: str, digest: str, size: int) -> bool:
        """In the caller's transaction (a mount's), with the namespace's row taken: may
        the namespace link this blob?"""
        await q.lock_quota(conn, namespace)
        used, quota = await q.quota_state(conn, namespace)
        if quota is None or used + size <= quota:
            return True
        return await q.in_namespace(conn, namespace, digest)

    @staticmethod
    def over(namespace: str, used: int, quota: int, size: int) -> OverQuota:
        return OverQuota(
            {"namespace": namespace, "used": used, "limit": quota, "needed": size},
            message=f"namespace {namespace!r} would go over its quota: {_size(used)} used of "
            f"{_size(quota)}, and this blob needs {_size(size)}; delete images (garbage "
            "collection then frees their blobs) or ask an admin to raise the quota",
        )


class Usage:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def overall(self) -> dict[str, Any]:
        """GET /api/v1/usage: every namespace, and the registry's totals."""
        async with self.db.read() as conn:
            rows = await q.namespaces(conn)
            return {
                "namespaces": [{"namespace": n, "bytes": b, "repositories": r} for n, b, r in rows],
                "stored_bytes": await q.total_bytes(conn),
                "reclaimable_bytes": await q.reclaimable(conn, now()),
                "uploads": await q.uploads(conn),
            }

    async def namespace(self, namespace: str) -> dict[str, Any]:
        """GET /api/v1/namespaces/<ns>/usage: the namespace and each repository."""
        check_namespace(namespace)
        async with self.db.read() as conn:
            used, quota = await q.quota_state(conn, namespace)
            repositories = [
                {"name": name, "bytes": size, "shared_bytes": await q.shared_bytes(conn, rid)}
                for rid, name, size in await q.repositories(conn, namespace)
            ]
            return {
                "namespace": namespace,
                "bytes": used,
                "quota_bytes": quota,
                "reclaimable_bytes": await q.reclaimable(conn, now(), namespace),
                "uploads": await q.uploads(conn, namespace),
                "repositories": repositories,
            }
