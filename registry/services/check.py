"""`registry check`: the one walk of the storage. It compares every stored blob with the
blobs table, both in digest order, so memory stays flat however many there are, and
reports bytes without a row, rows without bytes, and sizes that disagree.

Repairs (`--repair`) are only the safe ones:
- bytes without a row get a row, queued for garbage collection after a lease, so they
  are deleted by the collector's own protocol (a push placing those very bytes now
  renews the lease, and keeps them);
- a manifest's bytes that are gone are written again from the copy in the database.
A layer whose bytes are gone cannot be made again here: the report names the images
that use it, to be pushed again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from registry.digest import Digest
from registry.metadata import check as q
from registry.metadata.database import Database
from registry.services.leases import Leases
from registry.storage import BlobStore

_PAGE = 1000


@dataclass
class Finding:
    kind: str  # bytes-without-row, row-without-bytes, size-mismatch
    digest: str
    detail: str
    repaired: bool = False


@dataclass
class CheckReport:
    blobs_stored: int = 0
    rows: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def unrepaired(self) -> list[Finding]:
        return [f for f in self.findings if not f.repaired]


class StorageCheck:
    def __init__(self, db: Database, store: BlobStore, leases: Leases) -> None:
        self.db = db
        self.store = store
        self.leases = leases

    async def run(self, *, repair: bool = False) -> CheckReport:
        report = CheckReport()
        stored = aiter(self.store.walk())
        rows = aiter(self._rows())
        blob = await anext(stored, None)
        row = await anext(rows, None)
        while blob is not None or row is not None:
            if row is None or (blob is not None and str(blob[0]) < row[0]):
                assert blob is not None
                report.blobs_stored += 1
                await self._bytes_without_row(report, str(blob[0]), blob[1], repair)
                blob = await anext(stored, None)
            elif blob is None or row[0] < str(blob[0]):
                report.rows += 1
                await self._row_without_bytes(report, row[0], repair)
                row = await anext(rows, None)
            else:
                report.blobs_stored += 1
                report.rows += 1
                if blob[1] != row[1]:
                    report.findings.append(
                        Finding(
                            "size-mismatch",
                            row[0],
                            f"the index says {row[1]} bytes, the storage holds {blob[1]}",
                        )
                    )
                blob, row = await anext(stored, None), await anext(rows, None)
        return report

    async def _rows(self) -> AsyncIterator[tuple[str, int]]:
        after = ""
        while True:
            async with self.db.read() as conn:
                page = await q.blobs_after(conn, after, _PAGE)
            for item in page:
                yield item
            if len(page) < _PAGE:
                return
            after = page[-1][0]

    async def _bytes_without_row(
        self, report: CheckReport, digest: str, size: int, repair: bool
    ) -> None:
        finding = Finding("bytes-without-row", digest, f"{size} bytes no row accounts for")
        if repair:
            # As an upload would: wait out a collection deleting these bytes, then make
            # sure they are still there; with no row, nothing else deletes them.
            parsed = Digest.parse(digest)
            await self.leases.keep(parsed)
            if await self.store.stat(parsed) == size:
                async with self.db.write() as conn:
                    await q.adopt(conn, digest, size, self.leases.end())
                finding.detail += "; queued for garbage collection after a lease"
            else:
                finding.detail += "; gone since (a collection deleted them)"
            finding.repaired = True
        report.findings.append(finding)

    async def _row_without_bytes(self, report: CheckReport, digest: str, repair: bool) -> None:
        async with self.db.read() as conn:
            content = await q.manifest_content(conn, digest)
            users = await q.users_of(conn, digest)
        if content is not None:
            finding = Finding("row-without-bytes", digest, "a manifest; the database has a copy")
            if repair:
                parsed = Digest.parse(digest)
                await self.leases.keep(parsed)  # renews the row's lease, if it is there
                async with self.db.read() as conn:
                    still = await q.row_exists(conn, digest)
                if still:
                    await self.store.put_bytes(parsed, content)
                finding.repaired = True
                finding.detail += ": written again" if still else "; collected since"
        else:
            used = ", ".join(users) if users else "no manifest"
            finding = Finding(
                "row-without-bytes", digest, f"used by {used}: push the image(s) again"
            )
        report.findings.append(finding)
