"""The console's dashboard, for admins (every namespace) and owners (theirs): pushes and
pulls per day, the bytes stored day by day, the busiest repositories, failed webhook
deliveries and, for admins, the upload sessions in progress. Read from what the registry
keeps already (metadata/activity.py); nothing here is on a request's path but its own."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from registry.metadata import activity
from registry.metadata.database import Database
from registry.services.uploads import UploadService

DAYS = 30
BUSIEST = 10


@dataclass(frozen=True, slots=True)
class Series:
    """A value per day, oldest first."""

    days: list[date]
    values: list[int]

    @property
    def peak(self) -> int:
        return max(self.values, default=0)

    @property
    def total(self) -> int:
        return sum(self.values)


@dataclass(frozen=True, slots=True)
class Overview:
    pushes: Series
    pulls: Series
    stored: Series
    busiest: list[tuple[str, int]]  # (repository, pulls)
    failed: list[tuple[int, str, int]]  # (webhook, URL, failed deliveries)
    uploads: int | None  # in progress, every namespace's: for admins only


class Dashboard:
    def __init__(self, db: Database, uploads: UploadService) -> None:
        self.db = db
        self.uploads = uploads

    async def overview(self, namespaces: Collection[str] | None, days: int = DAYS) -> Overview:
        """The last `days` days of `namespaces` (None: every one, as an admin sees it)."""
        today = datetime.now(UTC).date()
        first = today - timedelta(days=days - 1)
        span = [first + timedelta(days=i) for i in range(days)]
        since = datetime.combine(first, time(), UTC)
        async with self.db.read() as conn:
            pushes = await activity.pushes_per_day(conn, since, namespaces)
            pulls = await activity.pulls_per_day(conn, first, namespaces)
            stored = await activity.stored_per_day(conn, first, today, namespaces)
            busiest = await activity.busiest(conn, namespaces, BUSIEST)
            failed = await activity.failed_deliveries(conn, namespaces)
        return Overview(
            pushes=Series(span, [pushes.get(d, 0) for d in span]),
            pulls=Series(span, [pulls.get(d, 0) for d in span]),
            stored=Series(span, [stored.get(d, 0) for d in span]),
            busiest=busiest,
            failed=failed,
            uploads=await self.uploads.in_progress() if namespaces is None else None,
        )
