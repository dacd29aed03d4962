"""What the storage lifecycle costs pushes and pulls, measured side by side.

    .venv/bin/python benchmarks/lifecycle.py [--before e2551ad] [--repeats 3] [--seconds 5]
        [--database postgresql] [--hot-only]

1. **Before and after**: `registry serve` at --before (a git worktree of that commit, run
   from this virtualenv with its own code first on PYTHONPATH) and at the working tree,
   each with its defaults (the collector wakes once a minute), on SQLite (or, with
   --database, a database each in one PostgreSQL cluster started for the run) and the
   filesystem, a worker per core each. The hot paths alternate between the two.
2. **While garbage collection runs**: the working tree twice, one with the collector off
   (`gc.interval_seconds` 0) and one passing every 0.2 s with leases of 1 s. During every
   measurement of either, a feeder uploads 64 KiB blobs that no manifest uses, at a fixed
   rate, so the collector has a steady stream of garbage to delete while the workload
   runs, and the run without it pays for the same uploads. The blobs the collector
   deleted are read from /api/v1/gc afterwards, to show it did work. --hot-only
   skips this part.

Load generators as in compare.py: wrk for GETs, ab for HEADs, the bare HTTP/1.1 client
for pushes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.compare import (  # noqa: E402
    DOCKER_MANIFEST,
    MIB,
    ab_head,
    location,
    push_image,
    small_pushes,
    wrk,
    wrk_mib,
)
from benchmarks.http1 import Connection, rate  # noqa: E402
from tests.peers.postgres import PostgresServer  # noqa: E402
from tests.peers.registry import RegistryProcess  # noqa: E402


@dataclass
class Server:
    name: str
    process: RegistryProcess
    urls: dict[str, str] = field(default_factory=dict)
    manifest: bytes = b""

    @property
    def url(self) -> str:
        return self.process.url


def start(
    name: str, root: Path, env: dict[str, str], postgres: PostgresServer | None = None
) -> Server:
    folder = root / name
    url = f"sqlite:///{folder / 'registry.db'}"
    if postgres is not None:
        database = "bench_" + "".join(c if c.isalnum() else "_" for c in name)
        postgres.execute(f"CREATE DATABASE {database}")
        url = postgres.url_for(database)
    common = {
        "REGISTRY_HTTP_WORKERS": str(os.cpu_count() or 1),
        "REGISTRY_LOG_LEVEL": "warning",
        "REGISTRY_DATABASE_URL": url,
        "REGISTRY_STORAGE_ROOT": str(folder / "storage"),
    }
    folder.mkdir(parents=True)
    return Server(name, RegistryProcess(folder, {**common, **env}).start())


def prepare(server: Server) -> None:
    medium = os.urandom(8 * MIB)
    with httpx.Client(timeout=600) as client:
        server.manifest = push_image(client, server.url, "bench/app", "latest", b"small layer")
        # A layer of an image, or the collector would delete it under the pulls.
        push_image(client, server.url, "bench/app", "medium", medium)
    digest = "sha256:" + hashlib.sha256(medium).hexdigest()
    small = "sha256:" + hashlib.sha256(b"small layer").hexdigest()
    server.urls = {
        "manifest": f"{server.url}/v2/bench/app/manifests/latest",
        "small_blob": f"{server.url}/v2/bench/app/blobs/{small}",
        "medium_blob": f"{server.url}/v2/bench/app/blobs/{digest}",
    }


def tag_pushes(server: Server, count: int = 2000, clients: int = 16) -> float:
    """Tags per second: `count` manifest PUTs of one image under new tags by `clients`
    at once, each on its own keep-alive connection (every PUT moves or adds a tag)."""
    stamp = time.monotonic_ns()
    tags = [f"t{stamp}-{i}" for i in range(count)]

    async def put(conn: Connection, tag: str) -> None:
        target = f"/v2/bench/app/manifests/{tag}"
        status, _, body = await conn.request(
            "PUT", target, server.manifest, content_type=DOCKER_MANIFEST
        )
        assert status == 201, body

    return rate(server.url, tags, clients, put)


class Background:
    """Work in a thread for as long as a measurement runs (a `with` block): `run` until
    `stopping` is set."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()

    def run(self) -> None:
        raise NotImplementedError


class Feeder(Background):
    """Uploads a 64 KiB blob nothing will reference `rate` times a second: garbage for
    the collector."""

    def __init__(self, base: str, rate: float) -> None:
        super().__init__(base)
        self.rate = rate
        self.sent = 0

    def run(self) -> None:
        with httpx.Client(timeout=60) as client:
            begun = time.monotonic()
            while not self.stopping.is_set():
                data = os.urandom(64 * 1024)
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                r = client.post(f"{self.base}/v2/bench/garbage/blobs/uploads/")
                url = location(self.base, r).copy_merge_params({"digest": digest})
                assert client.put(url, content=data).status_code == 201
                self.sent += 1
                pause = begun + self.sent / self.rate - time.monotonic()
                if pause > 0:
                    self.stopping.wait(pause)


@dataclass
class Row:
    label: str
    unit: str
    first: list[float] = field(default_factory=list)
    second: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.second) / statistics.median(self.first)


Workload = tuple[str, str, Callable[[Server], float]]


def workloads(seconds: int) -> list[Workload]:
    s = seconds
    return [
        (
            "manifest GET by tag, 64 clients",
            "req/s",
            lambda t: wrk(t.urls["manifest"], s, 64, accept=DOCKER_MANIFEST),
        ),
        (
            "manifest HEAD by tag, 64 clients",
            "req/s",
            lambda t: ab_head(t.urls["manifest"], s, 64, DOCKER_MANIFEST),
        ),
        ("blob HEAD, 64 clients", "req/s", lambda t: ab_head(t.urls["small_blob"], s, 64)),
        (
            "32 concurrent pulls of an 8 MiB blob",
            "MiB/s",
            lambda t: wrk_mib(t.urls["medium_blob"], s, 32),
        ),
        ("200 small blobs pushed by 16 clients", "blobs/s", lambda t: small_pushes(t.url)),
        ("2,000 tags pushed by 16 clients", "tags/s", tag_pushes),
    ]


def alternate(
    pair: tuple[Server, Server],
    repeats: int,
    seconds: int,
    around: Callable[[Server], AbstractContextManager[object]] = lambda _: nullcontext(),
    only: str | None = None,
) -> list[Row]:
    rows = []
    for label, unit, measure in workloads(seconds):
        if only and only not in label:
            continue
        row = Row(label, unit)
        for _ in range(repeats):
            for server, figures in zip(pair, (row.first, row.second), strict=True):
                with around(server):
                    figures.append(measure(server))
        rows.append(row)
        print(
            f"  {label}: {pair[0].name} {statistics.median(row.first):,.1f}, "
            f"{pair[1].name} {statistics.median(row.second):,.1f} {unit}",
            file=sys.stderr,
        )
    return rows


def table(title: str, pair: tuple[Server, Server], rows: list[Row]) -> str:
    first, second = pair[0].name, pair[1].name
    lines = [
        title,
        "",
        f"| workload | {first} | {second} | {second} / {first} |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {statistics.median(row.first):,.1f} {row.unit} | "
            f"{statistics.median(row.second):,.1f} {row.unit} | {row.ratio:.2f} |"
        )
    return "\n".join(lines)


def worktree(root: Path, revision: str) -> Path:
    path = root / "before-tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), revision],
        check=True,
        capture_output=True,
    )
    return path


def gc_deleted(server: Server) -> int:
    totals = httpx.get(f"{server.url}/api/v1/gc", timeout=30).json()["totals"]
    return int(totals["gc_blobs_deleted"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="e2551ad", help="the commit to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=50, help="garbage blobs per second")
    parser.add_argument("--only", metavar="TEXT", help="only workloads whose label has TEXT")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--hot-only", action="store_true", help="the before/after table only")
    args = parser.parse_args()
    if missing := [tool for tool in ("wrk", "ab") if not shutil.which(tool)]:
        sys.exit(f"benchmarks need {', '.join(missing)}: see `make bench`")
    root = Path(tempfile.mkdtemp(prefix="bench-lifecycle-"))
    servers: list[Server] = []
    tree = None
    postgres = PostgresServer(private=True, durable=True) if args.database != "sqlite" else None
    try:
        tree = worktree(root, args.before)
        before = start("before", root, {"PYTHONPATH": str(tree)}, postgres)
        after = start("after", root, {}, postgres)
        servers += [before, after]
        for server in servers:
            prepare(server)
        # The old code must really be what the "before" server imports.
        imported = subprocess.run(
            [sys.executable, "-c", "import registry; print(registry.__file__)"],
            env={**os.environ, "PYTHONPATH": str(tree)},
            cwd=root,  # not this checkout, which `python -c` would put first on its path
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert imported.startswith(str(tree)), imported
        pair = (before, after)
        first = alternate(pair, args.repeats, args.seconds, only=args.only)
        for server in servers:
            server.process.stop()
        servers.clear()
        if not args.hot_only:
            without = start("without GC", root, {"REGISTRY_GC_INTERVAL_SECONDS": "0"}, postgres)
            during = start(
                "during GC",
                root,
                {"REGISTRY_GC_INTERVAL_SECONDS": "0.2", "REGISTRY_GC_BLOB_LEASE_SECONDS": "1"},
                postgres,
            )
            servers += [without, during]
            for server in servers:
                prepare(server)
            pair = (without, during)
            feeders: list[Feeder] = []

            def feeding(server: Server) -> Feeder:
                feeders.append(Feeder(server.url, args.rate))
                return feeders[-1]

            second = alternate(pair, args.repeats, args.seconds, around=feeding, only=args.only)
            sent = sum(f.sent for f in feeders if f.base == during.url)
            deleted = gc_deleted(during)
    finally:
        for server in servers:
            server.process.stop()
        if tree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
    head = (
        f"{time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {args.database}, "
        f"median of {args.repeats} x {args.seconds} s"
    )
    print(head + "\n")
    print(table(f"Hot paths at {args.before} and at the working tree:", (before, after), first))
    if args.hot_only:
        return
    print()
    print(table(f"With {args.rate:g} garbage blobs/s fed in:", (without, during), second))
    print(
        f"\nDuring GC, the collector deleted {deleted:,} blobs; {sent:,} were fed to it (the "
        "small pushes' blobs, which no manifest uses, are garbage too)."
    )


if __name__ == "__main__":
    main()
