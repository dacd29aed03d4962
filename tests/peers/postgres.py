"""A PostgreSQL server for the tests: REGISTRY_TEST_POSTGRES_URL (an account that may
create databases), or a private cluster started from Debian's binaries on a free port."""

from __future__ import annotations

import asyncio
import contextlib
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
    def __init__(self, *, private: bool = False, durable: bool = False) -> None:
        """`private`: always a cluster of our own, which a test may stop and start.
        `durable`: writes reach the disk (fsync on), though a commit does not wait for
        it (synchronous_commit off, as SQLite's WAL with synchronous=NORMAL), for the
        benchmarks; tests run with fsync off."""
        self.durable = durable
        self.admin_url = "" if private else os.environ.get("REGISTRY_TEST_POSTGRES_URL", "")
        self._dir: Path | None = None
        self._bin: Path | None = None
        self._port = 0
        if not self.admin_url:
            self._start_private()

    def _start_private(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            unavailable("PostgreSQL is not installed (.ci/run installs it)")
        self._bin = Path(found[-1]).parent
        self._dir = Path(tempfile.mkdtemp(prefix="registry-pg-"))
        shutil.chown(self._dir, "postgres")
        self._port = free_port()
        # Passwords over TCP, as a production server asks (a refused password is tested);
        # the socket trusts the postgres account, for pg_ctl.
        secret = self._dir / "password"
        secret.write_text("postgres\n")
        shutil.chown(secret, "postgres")
        self._pg(
            "initdb", "-D", str(self._dir / "data"), "-U", "postgres", f"--pwfile={secret}",
            "--auth-local=trust", "--auth-host=scram-sha-256",
        )  # fmt: skip
        self.start()
        self.admin_url = f"postgresql://postgres:postgres@127.0.0.1:{self._port}/postgres"

    def _pg(self, program: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        assert self._bin is not None
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run(
            [*as_postgres, str(self._bin / program), *args], check=True, capture_output=True
        )

    def start(self) -> None:
        """Start the private cluster (again), on the same port."""
        assert self._dir is not None
        writes = "-c synchronous_commit=off" if self.durable else "-c fsync=off"
        options = f"-p {self._port} -k {self._dir} -c listen_addresses=127.0.0.1 {writes}"
        data, log = str(self._dir / "data"), str(self._dir / "log")
        self._pg("pg_ctl", "-D", data, "-l", log, "-w", "-o", options, "start")

    def halt(self, mode: str = "fast") -> None:
        """Stop the private cluster, ending every connection; its data stays."""
        assert self._dir is not None
        self._pg("pg_ctl", "-D", str(self._dir / "data"), "-m", mode, "-w", "stop")

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
        with contextlib.suppress(subprocess.CalledProcessError):
            self.halt("immediate")
        shutil.rmtree(self._dir, ignore_errors=True)
