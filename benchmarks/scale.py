"""The hot paths on a large index next to an almost empty one.

Loads the index (SQLite or a local PostgreSQL cluster) straight through the database
with --repositories repositories of --manifests tagged manifests each, every manifest
with its own config and layer blob (by default 100,000 repositories, 1,000,000 manifests
and tags, 2,000,000 blobs), then serves it with `registry serve` (a worker per core) and
measures manifest GET by tag, blob HEAD, a tag page, a catalog page and tag pushes; then
the same on an index of 300 repositories. Prints the ratios, each worker's RSS, and the
plan of each hot query on the large index.

    .venv/bin/python benchmarks/scale.py --database sqlite
    .venv/bin/python benchmarks/scale.py --database postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.compare import DOCKER_MANIFEST, ab_head, wrk  # noqa: E402
from benchmarks.http1 import Connection, rate  # noqa: E402
from benchmarks.memory import rss_kib  # noqa: E402
from registry.metadata.migrate import upgrade  # noqa: E402
from tests.peers.postgres import PostgresServer  # noqa: E402
from tests.peers.registry import RegistryProcess  # noqa: E402

CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
BATCH = 20_000
# The almost empty index: enough repositories for a full catalog page past the middle.
SMALL = 300


def repository_name(n: int) -> str:
    return f"ns{n // 100:04d}/app{n:06d}"


def blob_digest(n: int, kind: str) -> str:
    return "sha256:" + hashlib.sha256(f"{kind}-{n}".encode()).hexdigest()


def manifest_of(config: str, layer: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": CONFIG_TYPE, "digest": config, "size": 100},
            "layers": [{"mediaType": LAYER_TYPE, "digest": layer, "size": 1000}],
        }
    ).encode()


class Rows:
    """The rows of each table, in batches, for `repositories` x `manifests`."""

    def __init__(self, repositories: int, manifests: int) -> None:
        self.repositories = repositories
        self.manifests = manifests
        self.moment = datetime.now(UTC)

    def repository_rows(self) -> Iterator[list[tuple[object, ...]]]:
        for start in range(0, self.repositories, BATCH):
            end = min(start + BATCH, self.repositories)
            yield [
                (n + 1, repository_name(n), repository_name(n).split("/")[0], self.moment, 0)
                for n in range(start, end)
            ]

    def per_manifest(self) -> Iterator[list[tuple[int, int, str, str, bytes]]]:
        """(manifest id, repository id, config, layer, content) in batches."""
        batch = []
        for repo in range(self.repositories):
            for m in range(self.manifests):
                n = repo * self.manifests + m
                config, layer = blob_digest(n, "config"), blob_digest(n, "layer")
                batch.append((n + 1, repo + 1, config, layer, manifest_of(config, layer)))
                if len(batch) == BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch


def tables(rows: Rows) -> Iterator[tuple[str, list[str], list[tuple[object, ...]]]]:
    """(table, columns, rows) batches in an order the foreign keys accept."""
    for batch in rows.repository_rows():
        yield "repositories", ["id", "name", "namespace", "created_at", "tags_version"], batch
    t = rows.moment
    for batch in rows.per_manifest():
        blobs = [
            (d, s, t, t, None) for _, _, c, lay, _ in batch for d, s in ((c, 100), (lay, 1000))
        ]
        yield "blobs", ["digest", "size", "created_at", "leased_until", "gc_after"], blobs
        links = [(repo, d, t) for _, repo, c, lay, _ in batch for d in (c, lay)]
        yield "repository_blobs", ["repository_id", "digest", "created_at"], links
        manifests = [
            (
                mid,
                repo,
                "sha256:" + hashlib.sha256(content).hexdigest(),
                DOCKER_MANIFEST,
                len(content),
                c,
                content,
                t,
            )
            for mid, repo, c, _, content in batch
        ]
        columns = ["id", "repository_id", "digest", "media_type", "size", "config_digest"]
        yield "manifests", [*columns, "content", "created_at"], manifests
        references = [(mid, d, "blob") for mid, _, c, lay, _ in batch for d in (c, lay)]
        yield "manifest_references", ["manifest_id", "digest", "kind"], references
        tags = [(repo, f"v{(mid - 1) % rows.manifests}", mid, t) for mid, repo, _, _, _ in batch]
        yield "tags", ["repository_id", "name", "manifest_id", "updated_at"], tags


def load_sqlite(path: Path, rows: Rows) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    with conn:
        for table, columns, batch in tables(rows):
            marks = ", ".join("?" for _ in columns)
            values = [
                tuple(
                    v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for v in r
                )
                for r in batch
            ]
            conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)
    conn.execute("ANALYZE")
    conn.close()


async def load_postgres(url: str, rows: Rows) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            for table, columns, batch in tables(rows):
                await conn.copy_records_to_table(table, records=batch, columns=columns)
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('repositories', 'id'), "
                "(SELECT max(id) FROM repositories))"
            )
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('manifests', 'id'), "
                "(SELECT max(id) FROM manifests))"
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


class Index:
    """A loaded index and `registry serve` on it."""

    def __init__(self, root: Path, database: str, postgres: PostgresServer | None, rows: Rows):
        self.rows = rows
        self.root = root
        root.mkdir(parents=True)
        if postgres is None:
            path = root / "registry.db"
            self.url = f"sqlite:///{path}"
            upgrade(f"sqlite+aiosqlite:///{path}")
            load_sqlite(path, rows)
        else:
            name = f"scale_{root.name}"
            postgres.execute(f"CREATE DATABASE {name}")
            self.url = postgres.url_for(name)
            upgrade(self.url.replace("postgresql://", "postgresql+asyncpg://", 1))
            asyncio.run(load_postgres(self.url, rows))
        env = {
            "REGISTRY_DATABASE_URL": self.url,
            "REGISTRY_HTTP_WORKERS": str(os.cpu_count() or 1),
            "REGISTRY_LOG_LEVEL": "warning",
        }
        self.server = RegistryProcess(root / "data", env).start()

    def middle(self) -> tuple[str, int]:
        repo = self.rows.repositories // 2
        return repository_name(repo), repo * self.rows.manifests

    def measure(self, seconds: int) -> dict[str, float]:
        base = self.server.url
        name, n = self.middle()
        layer = blob_digest(n, "layer")
        manifest = manifest_of(blob_digest(n, "config"), layer)
        found: dict[str, float] = {}
        found["manifest GET by tag, 64 clients"] = wrk(
            f"{base}/v2/{name}/manifests/v0", seconds, 64, accept=DOCKER_MANIFEST
        )
        found["blob HEAD, 64 clients"] = ab_head(f"{base}/v2/{name}/blobs/{layer}", seconds, 64)
        found["tag page (n=100), 64 clients"] = wrk(
            f"{base}/v2/{name}/tags/list?n=100", seconds, 64
        )
        found["catalog page (n=100), 16 clients"] = wrk(
            f"{base}/v2/_catalog?n=100&last={name}", seconds, 16
        )
        stamp = time.monotonic_ns()

        async def put(conn: Connection, tag: str) -> None:
            status, _, body = await conn.request(
                "PUT", f"/v2/{name}/manifests/{tag}", manifest, content_type=DOCKER_MANIFEST
            )
            assert status == 201, body

        tags = [f"p{stamp}-{i}" for i in range(2000)]
        found["2,000 tags pushed by 16 clients"] = rate(base, tags, 16, put)
        return found

    def worker_rss(self) -> list[float]:
        assert self.server.process is not None
        pid = self.server.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [rss_kib(int(child)) / 1024 for child in children]


def explain(index: Index, database: str) -> list[str]:
    """The plan of each hot query on `index`, as the database gives it."""
    name, n = index.middle()
    layer = blob_digest(n, "layer")
    queries = {
        "manifest GET by tag": (
            "SELECT m.digest, m.media_type, m.content FROM manifests m JOIN tags t ON "
            "t.manifest_id = m.id JOIN repositories r ON r.id = t.repository_id "
            "WHERE r.name = :name AND t.name = 'v0'"
        ),
        "blob HEAD": (
            "SELECT b.size FROM blobs b JOIN repository_blobs l ON l.digest = b.digest "
            "JOIN repositories r ON r.id = l.repository_id WHERE r.name = :name "
            "AND b.digest = :layer"
        ),
        "tag page": (
            "SELECT name FROM tags WHERE repository_id = (SELECT id FROM repositories "
            "WHERE name = :name) AND name {collate} > '' ORDER BY name {collate} LIMIT 100"
        ),
        "catalog page": (
            "SELECT name FROM repositories WHERE name {collate} > :name "
            "ORDER BY name {collate} LIMIT 100"
        ),
        "manifest PUT: the blobs it references": (
            "SELECT b.digest FROM blobs b JOIN repository_blobs l ON l.digest = b.digest "
            "WHERE l.repository_id = (SELECT id FROM repositories WHERE name = :name) "
            "AND b.digest = :layer ORDER BY b.digest"
        ),
    }
    out = []
    for label, text in queries.items():
        text = text.format(collate='COLLATE "C"' if database == "postgresql" else "")
        if database == "sqlite":
            conn = sqlite3.connect(index.url.removeprefix("sqlite:///"))
            plan = conn.execute(
                "EXPLAIN QUERY PLAN " + text, {"name": name, "layer": layer}
            ).fetchall()
            conn.close()
            lines = [row[-1] for row in plan]
        else:
            numbered = text.replace(":name", "$1").replace(":layer", "$2")
            args = [name, layer] if "$2" in numbered else [name]

            async def plan_of(sql: str, values: list[str]) -> list[str]:
                conn = await asyncpg.connect(index.url)
                try:
                    rows = await conn.fetch("EXPLAIN " + sql, *values)
                finally:
                    await conn.close()
                return [row[0] for row in rows]

            lines = asyncio.run(plan_of(numbered, args))
        out.append(f"{label}:\n" + "\n".join(f"    {line}" for line in lines))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--repositories", type=int, default=100_000)
    parser.add_argument("--manifests", type=int, default=10, help="per repository")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    postgres = PostgresServer(private=True, durable=True) if args.database == "postgresql" else None
    results: dict[str, dict[str, list[float]]] = {"small": {}, "large": {}}
    rss: dict[str, list[float]] = {}
    plans: list[str] = []
    try:
        begun = time.perf_counter()
        large = Index(
            root / "large", args.database, postgres, Rows(args.repositories, args.manifests)
        )
        loaded = time.perf_counter() - begun
        print(f"loaded the large index in {loaded:.0f} s", file=sys.stderr)
        plans = explain(large, args.database)
        small = Index(root / "small", args.database, postgres, Rows(SMALL, args.manifests))
        for _ in range(args.repeats):
            for size, index in (("small", small), ("large", large)):
                for label, value in index.measure(args.seconds).items():
                    results[size].setdefault(label, []).append(value)
        rss = {"small": small.worker_rss(), "large": large.worker_rss()}
        small.server.stop()
        large.server.stop()
    finally:
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
    rows = args.repositories * args.manifests
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {args.database}; median of {args.repeats} x "
        f"{args.seconds} s. Large: {args.repositories:,} repositories, {rows:,} manifests "
        f"and tags, {2 * rows:,} blobs (loaded in {loaded:.0f} s); small: {SMALL} repositories.\n"
    )
    print("| workload | small index | large index | large / small | goal | met |")
    print("|---|---|---|---|---|---|")
    for label, values in results["large"].items():
        few, many = statistics.median(results["small"][label]), statistics.median(values)
        ratio = few / many  # how many times slower on the large index
        print(
            f"| {label} | {few:,.0f} | {many:,.0f} | {1 / ratio:.2f} | >= 0.80 "
            f"(within 1.25x) | {'yes' if ratio <= 1.25 else '**no**'} |"
        )
    for size, values in rss.items():
        print(
            f"\nworker RSS after the run, {size} index: "
            + ", ".join(f"{v:.0f} MiB" for v in values)
        )
    print("\nQuery plans on the large index:\n")
    print("\n".join(plans))


if __name__ == "__main__":
    main()
