"""Garbage collection: how fast a pass deletes blobs (filesystem, and S3 on moto's server),
and what finding garbage costs as the number of live blobs grows.

    .venv/bin/python benchmarks/gc.py [--garbage 2000] [--live 1000000] [--manifests 100000]

1. Throughput: --garbage unreferenced blobs of 1 KiB, stored through the registry's own
   store and rows, their leases ended; one `collect()` deletes them all. Blobs per second.
2. Finding garbage: the index holds --live live blobs (referenced by --manifests manifests)
   plus 1,000 due ones, inserted in bulk on SQLite; the time of `find()` (the dry run) and
   of a pass over the 1,000, with 10,000 live blobs and with --live: one range of the
   gc_after index, so the two should be alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

from registry.config import Settings, load_settings
from registry.digest import Digest
from registry.metadata.migrate import upgrade
from registry.wiring import Registry

_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def settings_for(root: Path, s3: str | None) -> dict[str, str]:
    env = {
        "REGISTRY_DATA_DIR": str(root),
        "REGISTRY_AUTH_ENABLED": "false",
        "REGISTRY_LOG_LEVEL": "warning",
    }
    if s3:
        env.update(
            {
                "REGISTRY_STORAGE_DRIVER": "s3",
                "REGISTRY_STORAGE_S3_BUCKET": "bench",
                "REGISTRY_STORAGE_S3_ENDPOINT_URL": s3,
                "REGISTRY_STORAGE_S3_ACCESS_KEY": "bench",
                "REGISTRY_STORAGE_S3_SECRET_KEY": "bench",
                "REGISTRY_STORAGE_S3_ADDRESSING_STYLE": "path",
            }
        )
    return env


def migrated(root: Path, s3: str | None) -> Settings:
    settings = load_settings(None, settings_for(root, s3))
    upgrade(settings.database_url)  # (outside the event loop: Alembic runs its own)
    return settings


async def throughput(settings: Settings, root: Path, garbage: int) -> float:
    registry = Registry(settings)
    try:
        past = (datetime.now(UTC) - timedelta(hours=1)).strftime(_SQLITE_TIME)
        rows = []
        for n in range(garbage):
            data = n.to_bytes(8, "big") * 128
            digest = Digest.of(data)
            await registry.store.put_bytes(digest, data)
            rows.append((str(digest), len(data), past, past, past))
        with sqlite3.connect(root / "registry.db") as db:
            db.executemany(
                "INSERT INTO blobs (digest, size, created_at, leased_until, gc_after) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        started = time.perf_counter()
        done = await registry.gc.collect(sweep_uploads=False)
        seconds = time.perf_counter() - started
        assert done.blobs_deleted == garbage and done.error is None, done
        return garbage / seconds
    finally:
        await registry.close()


async def finding(settings: Settings, root: Path, live: int, manifests: int) -> tuple[float, float]:
    """Seconds of find() and of a pass over 1,000 due blobs beside `live` live ones."""
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime(_SQLITE_TIME)
    with sqlite3.connect(root / "registry.db") as db:
        db.execute(
            "INSERT INTO repositories (id, name, namespace, created_at) VALUES (1, 'b/r', 'b', ?)",
            (past,),
        )
        db.executemany(
            "INSERT INTO blobs (digest, size, created_at) VALUES (?, 1, ?)",
            ((f"sha256:a{n:063x}", past) for n in range(live)),
        )
        db.executemany(
            "INSERT INTO manifests (id, repository_id, digest, media_type, size, content, "
            "created_at) VALUES (?, 1, ?, 'm', 1, x'00', ?)",
            ((m, f"sha256:c{m:063x}", past) for m in range(1, manifests + 1)),
        )
        db.executemany(
            "INSERT INTO manifest_references (manifest_id, digest, kind) VALUES (?, ?, 'blob')",
            ((n % manifests + 1, f"sha256:a{n:063x}") for n in range(live)),
        )
        db.executemany(
            "INSERT INTO blobs (digest, size, created_at, leased_until, gc_after) "
            "VALUES (?, 1, ?, ?, ?)",
            ((f"sha256:b{n:063x}", past, past, past) for n in range(1000)),
        )
    registry = Registry(settings)
    try:
        started = time.perf_counter()
        garbage = await registry.gc.find()
        find_seconds = time.perf_counter() - started
        assert len(garbage.blobs) == 1000, len(garbage.blobs)
        started = time.perf_counter()
        done = await registry.gc.collect(sweep_uploads=False)
        pass_seconds = time.perf_counter() - started
        assert done.blobs_deleted == 1000, done
        return find_seconds, pass_seconds
    finally:
        await registry.close()


def moto() -> AbstractContextManager[str]:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "s3_store", Path(__file__).with_name("s3_store.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.moto()  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--garbage", type=int, default=2000)
    parser.add_argument("--live", type=int, default=1_000_000)
    parser.add_argument("--manifests", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.pop("REGISTRY_CONFIG", None)
    for name, store in (("filesystem", nullcontext(None)), ("S3 (moto)", moto())):
        with store as endpoint, tempfile.TemporaryDirectory() as tmp:
            settings = migrated(Path(tmp), endpoint)
            rate = asyncio.run(throughput(settings, Path(tmp), args.garbage))
        print(f"| collect {args.garbage} blobs, {name} | {rate:,.0f} blobs/s |")
    for live, manifests in ((10_000, 1_000), (args.live, args.manifests)):
        with tempfile.TemporaryDirectory() as tmp:
            settings = migrated(Path(tmp), None)
            find_s, pass_s = asyncio.run(finding(settings, Path(tmp), live, manifests))
        what = f"{live:,} live blobs, {manifests:,} manifests, 1,000 due"
        print(f"| {what} | find {find_s * 1000:.0f} ms, pass {pass_s * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
