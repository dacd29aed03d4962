"""A PostgreSQL server for the tests: REGISTRY_TEST_POSTGRES_URL (an account that may
create databases), or a private cluster started from Debian's binaries on a free port."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from tests.peers.tools import free_port, unavailable


class PostgresServer:
    def __init__(self) -> None:
        self.admin_url = os.environ.get("REGISTRY_TEST_POSTGRES_URL", "")
        self._dir: Path | None = None
        self._bin: Path | None = None
        if not self.admin_url:
            self._start_private()

    def _start_private(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            unavailable("PostgreSQL is not installed (.ci/run installs it)")
        self._bin = Path(found[-1]).parent
        self._dir = Path(tempfile.mkdtemp(prefix="registry-pg-"))
        shutil.chown(self._dir, "postgres")
        port = free_port()
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        data = self._dir / "data"
        subprocess.run(
            [
                *as_postgres,
                str(self._bin / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_postgres,
                str(self._bin / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(self._dir / "log"),
                "-w",
                "-o",
                f"-p {port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        self.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def url_for(self, database: str) -> str:
        base, _ = self.admin_url.rsplit("/", 1)
        return f"{base}/{database}"

    def execute(self, sql: str) -> None:
        async def run() -> None:
            conn = await asyncpg.connect(self.admin_url)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())

    def drop_database(self, name: str, attempts: int = 20) -> None:
        """Drop a test database and end its sessions. CI's account may not end an
        autovacuum worker that happens to be in the database; it leaves within moments."""
        for attempt in range(attempts):
            try:
                self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                return
            except asyncpg.InsufficientPrivilegeError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.25)

    def stop(self) -> None:
        if self._dir is None or self._bin is None:
            return
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [
                *as_postgres,
                str(self._bin / "pg_ctl"),
                "-D",
                str(self._dir / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(self._dir, ignore_errors=True)
