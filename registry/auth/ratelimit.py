"""Failed-login limits per (account, client address), kept in the database so that every
replica and worker counts the same failures.

A window opens at the first failure; `attempts` failures inside it shut that account to
that address until the window ends. A success clears the count.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from registry.metadata import accounts as q
from registry.metadata.database import Database


class LoginLimiter:
    def __init__(self, db: Database, attempts: int, window_seconds: float) -> None:
        self.db = db
        self.attempts = attempts
        self.window = timedelta(seconds=window_seconds)

    async def check(self, account: str, client: str) -> tuple[int | None, int]:
        """Seconds until the next attempt may be made (None: now), and the failures that
        count so far."""
        async with self.db.read() as conn:
            found = await q.login_failures(conn, account, client)
        if found is None:
            return None, 0
        first_at, count = found
        # SQLite hands back naive datetimes; everything is stored in UTC.
        first_at = first_at if first_at.tzinfo else first_at.replace(tzinfo=UTC)
        remaining = (first_at + self.window - datetime.now(UTC)).total_seconds()
        if remaining <= 0:
            return None, 0
        if count < self.attempts:
            return None, count
        return max(1, math.ceil(remaining)), count

    async def failed(self, account: str, client: str) -> None:
        async with self.db.write() as conn:
            await q.count_login_failure(conn, account, client, datetime.now(UTC) - self.window)

    async def succeeded(self, account: str, client: str) -> None:
        async with self.db.write() as conn:
            await q.clear_login_failures(conn, account, client)
