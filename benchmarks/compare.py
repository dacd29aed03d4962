"""Every hot path, side by side with CNCF Distribution 2.8 (Debian's `docker-registry`) on
this machine: `make bench`.

    .venv/bin/python benchmarks/compare.py [--repeats 3] [--seconds 5] [--quick]
        [--database sqlite|postgresql|both] [--only TEXT]

Both registries get the filesystem store in a fresh folder and no auth; ours runs
`registry serve` with one uvicorn worker per core on SQLite (or PostgreSQL; `both`: one
after the other, then issue 36's goals from the two). Each workload runs against
each registry in turn, `--repeats` times, and the table shows medians and the ratio
ours / Distribution (for the nginx rows: ours behind nginx with X-Accel-Redirect / nginx
serving the same file statically). Request rates and transfers come from wrk (Debian's;
C, two threads, not the bottleneck: nginx answers 60,000+ small requests/s with it here);
small pushes from a bare asyncio HTTP/1.1 client (benchmarks/http1.py; httpx was the
bottleneck there); uploads from curl.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.http1 import Connection, rate  # noqa: E402
from benchmarks.memory import PeakRss  # noqa: E402
from tests.peers.distribution import Distribution  # noqa: E402
from tests.peers.nginx import RegistryNginx  # noqa: E402
from tests.peers.postgres import PostgresServer  # noqa: E402
from tests.peers.registry import RegistryProcess, workers_of  # noqa: E402
from tests.peers.tls import self_signed  # noqa: E402

MIB = 2**20
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
STATIC = """
    location /static/ {
        alias %s/blobs/;
        sendfile on;
        tcp_nopush on;
    }
"""


# Clients


def location(base: str, answer: httpx.Response | str) -> httpx.URL:
    """Distribution answers absolute Locations with state in the query; ours, relative."""
    found = answer if isinstance(answer, str) else answer.headers["location"]
    return httpx.URL(base).join(found)


def push_blob(client: httpx.Client, base: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    r = client.put(location(base, r).copy_merge_params({"digest": digest}), content=data)
    assert r.status_code == 201, r.text
    return digest


def push_image(client: httpx.Client, base: str, repo: str, tag: str, layer: bytes) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": push_blob(client, base, repo, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": push_blob(client, base, repo, layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    put_manifest(client, base, repo, tag, manifest)
    return manifest


def put_manifest(client: httpx.Client, base: str, repo: str, tag: str, body: bytes) -> None:
    r = client.put(
        f"{base}/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": DOCKER_MANIFEST}
    )
    assert r.status_code == 201, r.text


def wrk(url: str, seconds: int, connections: int, accept: str = "") -> float:
    """Requests per second, as wrk measures them."""
    return _wrk(url, seconds, connections, accept)[0]


def ab_head(url: str, seconds: int, connections: int, accept: str = "") -> float:
    """HEAD requests per second, from ab (wrk waits forever for the body a HEAD
    response's Content-Length announces)."""
    args = ["ab", "-i", "-k", "-q", f"-c{connections}", f"-t{seconds}", "-n", "10000000"]
    if accept:
        args += ["-H", f"Accept: {accept}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or not re.search(r"Failed requests:\s+0\b", out):
        raise RuntimeError(f"ab saw errors from {url}:\n{out}")
    return float(re.search(r"Requests per second:\s+([\d.]+)", out)[1])  # type: ignore[index]


def wrk_mib(url: str, seconds: int, connections: int) -> float:
    """MiB per second received, as wrk measures it."""
    return _wrk(url, seconds, connections, "")[1]


def wrk_p99(url: str, seconds: int, connections: int, accept: str = "") -> float:
    """The 99th percentile of response times in ms, as wrk measures it."""
    return _wrk(url, seconds, connections, accept)[2]


def _wrk(url: str, seconds: int, connections: int, accept: str) -> tuple[float, float, float]:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if accept:
        args += ["-H", f"Accept: {accept}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors from {url}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    amount, unit = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out).groups()  # type: ignore[union-attr]
    scale = {"B": 1 / MIB, "KB": 1 / 1024, "MB": 1, "GB": 1024}[unit]
    p99, p99_unit = re.search(r"\b99%\s+([\d.]+)(us|ms|s)\b", out).groups()  # type: ignore[union-attr]
    return rate, float(amount) * scale, float(p99) * {"us": 0.001, "ms": 1, "s": 1000}[p99_unit]


# The servers


@dataclass
class Target:
    name: str
    url: str
    pid: int


class Bench:
    def __init__(self, seconds: int, database: str = "sqlite") -> None:
        self.seconds = seconds
        self.database = database
        self.root = Path(tempfile.mkdtemp(prefix="bench-"))
        cores = str(os.cpu_count() or 1)
        storage = self.root / "storage"
        self.postgres: PostgresServer | None = None
        url = f"sqlite:///{self.root / 'registry.db'}"
        if database == "postgresql":
            self.postgres = PostgresServer(private=True, durable=True)
            self.postgres.execute("CREATE DATABASE registry_bench")
            url = self.postgres.url_for("registry_bench")
        common = {
            "REGISTRY_STORAGE_ROOT": str(storage),
            "REGISTRY_HTTP_WORKERS": cores,
            "REGISTRY_LOG_LEVEL": "warning",
            "REGISTRY_DATABASE_URL": url,
        }
        self.ours = RegistryProcess(self.root / "ours", common).start()
        # The same data, answering blob GETs with X-Accel-Redirect, behind nginx.
        accel = {**common, "REGISTRY_STORAGE_ACCEL_REDIRECT": "/_blobs/"}
        self.accel = RegistryProcess(self.root / "accel", accel).start()
        (self.root / "distribution").mkdir()
        self.distribution = Distribution(self.root / "distribution").start()
        cert, key = self_signed(self.root / "tls")
        self.nginx = RegistryNginx(self.root / "nginx", [self.accel.port], storage, cert, key)
        conf = self.nginx.root / "nginx.conf"
        text = conf.read_text()
        at = text.rindex("}", 0, text.rindex("}"))
        conf.write_text(text[:at] + STATIC % storage + text[at:])
        self.nginx.start()
        assert self.ours.process and self.distribution.process
        self.targets = [
            Target("ours", self.ours.url, self.ours.process.pid),
            Target("distribution", self.distribution.url, self.distribution.process.pid),
        ]

    def close(self) -> None:
        for server in (self.nginx, self.ours, self.accel, self.distribution):
            server.stop()
        if self.postgres is not None:
            self.postgres.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# Workloads: each returns a callable per target that measures once.


@dataclass
class Row:
    label: str
    unit: str
    target: float
    ours: list[float]
    reference: list[float]
    # "distribution", or "nginx static" for the rows that compare with nginx.
    against: str = "distribution"
    # Lower is better (memory).
    lower: bool = False

    @property
    def ratio(self) -> float:
        if not self.reference:  # ours alone: the value is the measure
            return statistics.median(self.ours)
        ours, ref = statistics.median(self.ours), statistics.median(self.reference)
        return ref / ours if self.lower else ours / ref

    @property
    def met(self) -> bool:
        if self.lower:
            return statistics.median(self.ours) < self.target
        return self.ratio >= self.target


def prepare(bench: Bench) -> dict[str, dict[str, str]]:
    """Content in both registries; returns per-target URLs of what the workloads read."""
    urls: dict[str, dict[str, str]] = {}
    big = os.urandom(256 * MIB)
    medium = os.urandom(8 * MIB)
    with httpx.Client(timeout=600) as client:
        for target in bench.targets:
            base = target.url
            manifest = push_image(client, base, "bench/app", "latest", b"small layer")
            big_digest = push_blob(client, base, "bench/app", big)
            medium_digest = push_blob(client, base, "bench/app", medium)
            tagged = push_image(client, base, "bench/tags", "t00000", b"small layer")
            # The same image, where the tag pushes go: its blobs must be there.
            assert push_image(client, base, "bench/pushed", "base", b"small layer") == tagged
            for i in range(1, 5000):
                put_manifest(client, base, "bench/tags", f"t{i:05d}", tagged)
            urls[target.name] = {
                "manifest": f"{base}/v2/bench/app/manifests/latest",
                "small_blob": f"{base}/v2/bench/app/blobs/"
                + "sha256:"
                + hashlib.sha256(b"small layer").hexdigest(),
                "big_blob": f"{base}/v2/bench/app/blobs/{big_digest}",
                "medium_blob": f"{base}/v2/bench/app/blobs/{medium_digest}",
                "tags_all": f"{base}/v2/bench/tags/tags/list?n=5000",
                "tags_page": f"{base}/v2/bench/tags/tags/list?n=100&last=t02500",
                "tagged_manifest": tagged.decode(),
            }
    digest = urls["ours"]["big_blob"].rsplit("/", 1)[1]
    medium_digest = urls["ours"]["medium_blob"].rsplit("/", 1)[1]
    # The manifest's bytes are stored as a blob too: nginx serves the same bytes.
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    for name, d in (("big", digest), ("medium", medium_digest), ("manifest", manifest_digest)):
        hex_ = d.split(":")[1]
        urls[f"nginx_{name}"] = {
            "accel": f"{bench.nginx.url}/v2/bench/app/blobs/{d}",
            "static": f"{bench.nginx.url}/static/sha256/{hex_[:2]}/{hex_}",
        }
    return urls


def tag_pushes(base: str, manifest: bytes, count: int = 5000, clients: int = 16) -> float:
    """Tags per second: `count` PUTs of one manifest under new tags by `clients` at once,
    each on its own keep-alive connection: every PUT checks the manifest's blobs and adds
    a tag."""
    stamp = time.monotonic_ns()

    async def put(conn: Connection, tag: str) -> None:
        status, _, body = await conn.request(
            "PUT", f"/v2/bench/pushed/manifests/{tag}", manifest, content_type=DOCKER_MANIFEST
        )
        assert status == 201, body

    return rate(base, [f"p{stamp}-{i}" for i in range(count)], clients, put)


def small_pushes(base: str, count: int = 200, clients: int = 16) -> float:
    """Blobs per second, `count` small blobs pushed (POST, then PUT) by `clients` at once,
    each on its own keep-alive connection."""
    blobs = [os.urandom(1024) + str(time.monotonic_ns()).encode() for _ in range(count)]

    async def push(conn: Connection, data: bytes) -> None:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, _ = await conn.request("POST", "/v2/bench/small/blobs/uploads/")
        assert status == 202, status
        url = location(base, headers["location"]).copy_merge_params({"digest": digest})
        status, _, body = await conn.request("PUT", url.raw_path.decode(), data)
        assert status == 201, body

    return rate(base, blobs, clients, push)


def curl(method: str, url: str, *extra: str) -> tuple[str, float]:
    """One request by curl (a Python client is slower than either registry), which must
    answer 201 or 202: the URL its Location names (or `url`), and the request's seconds."""
    out = subprocess.run(
        [
            *("curl", "-sS", "-H", "Expect:", "-X", method, "-D", "-", "-o", "/dev/null"),
            *("-w", "\ntime=%{time_total}\n", *extra, url),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    status = int(out.split()[1])
    assert status in (201, 202), out
    found = re.search(r"(?im)^location:\s*(\S+)", out)
    seconds = float(re.findall(r"time=([\d.]+)", out)[-1])
    return (str(httpx.URL(url).join(found[1])) if found else url), seconds


def upload(base: str, folder: Path, chunk: int | None) -> float:
    """MiB/s for one 256 MiB blob uploaded whole (PUT) or in `chunk`-sized PATCHes, sent
    by curl from a file (a Python client is slower than either registry)."""
    data = os.urandom(256 * MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    files = []
    for i, piece in enumerate(pieces):
        files.append(folder / f"piece{i}")
        files[-1].write_bytes(piece)
    del data, pieces

    start = time.perf_counter()
    url = httpx.URL(curl("POST", f"{base}/v2/bench/upload/blobs/uploads/")[0])
    if chunk is None:
        curl("PUT", str(url.copy_merge_params({"digest": digest})), "-T", str(files[0]))
    else:
        offset = 0
        for path in files:
            size = path.stat().st_size
            headers = ["-H", f"Content-Range: {offset}-{offset + size - 1}"]
            headers += ["-H", "Content-Type: application/octet-stream"]
            url = httpx.URL(curl("PATCH", str(url), *headers, "-T", str(path))[0])
            offset += size
        curl("PUT", str(url.copy_merge_params({"digest": digest})))
    elapsed = time.perf_counter() - start
    for path in files:
        path.unlink()
    return 256 / elapsed


def chunked_upload_keepalive(base: str, chunk: int = 16 * MIB) -> float:
    """MiB/s for one 256 MiB blob in `chunk`-sized PATCHes on one keep-alive connection,
    as docker, containerd and oras send them (curl above opens one per request)."""
    data = os.urandom(256 * MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    async def run() -> float:
        conn = await Connection.open(base)
        start = time.perf_counter()
        status, headers, _ = await conn.request("POST", "/v2/bench/upload/blobs/uploads/")
        url = location(base, headers["location"])
        for offset in range(0, len(data), chunk):
            piece = data[offset : offset + chunk]
            status, headers, body = await conn.request(
                "PATCH",
                url.raw_path.decode(),
                piece,
                {"Content-Range": f"{offset}-{offset + len(piece) - 1}"},
            )
            assert status == 202, body
            url = location(base, headers["location"])
        status, _, body = await conn.request(
            "PUT", url.copy_merge_params({"digest": digest}).raw_path.decode()
        )
        assert status == 201, body
        elapsed = time.perf_counter() - start
        await conn.close()
        return 256 / elapsed

    return asyncio.run(run())


def peak_rss_during_upload(target: Target, gib: float = 1.0) -> float:
    """MiB of resident memory above idle while one `gib` GiB blob streams in."""

    def body() -> Iterator[bytes]:
        piece = os.urandom(MIB)
        for _ in range(int(gib * 1024)):
            yield piece

    with PeakRss(target.pid) as rss, httpx.Client(timeout=600) as client:
        r = client.post(f"{target.url}/v2/bench/rss/blobs/uploads/")
        r = client.patch(location(target.url, r), content=body())
        assert r.status_code == 202, r.text
    return rss.growth_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql", "both"],
        default="sqlite",
        help="our index: SQLite, or a local PostgreSQL cluster started for the run; both: "
        "one after the other, then issue 36's goals from the two",
    )
    parser.add_argument(
        "--only", metavar="TEXT", help="only the workloads whose label contains TEXT"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seconds = 1, 2
    tools = ("wrk", "ab", "curl", "nginx", "docker-registry", "ss")
    if missing := [tool for tool in tools if not shutil.which(tool)]:
        sys.exit(f"benchmarks need {', '.join(missing)}: see `make bench`")
    results = {}
    for database in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        bench = Bench(args.seconds, database)
        try:
            results[database] = run(bench, args.repeats, args.seconds, args.only)
        finally:
            bench.close()
        print(table(results[database], args, database) + "\n", flush=True)
    if len(results) == 2:
        print(goals(results))


def run(bench: Bench, repeats: int, seconds: int, only: str | None = None) -> list[Row]:
    ours, ref = bench.targets

    def chosen(label: str) -> bool:
        return only is None or only in label

    # First, on fresh processes: after the other workloads their heaps stay grown, and a
    # 1 GiB upload would show no growth at all.
    memory = Row("server RSS growth during a 1 GiB upload", "MiB", 100.0, [], [], lower=True)
    if chosen(memory.label):
        memory.ours.append(peak_rss_during_upload(ours))
        memory.reference.append(peak_rss_during_upload(ref))
    urls = prepare(bench)
    s = seconds
    # label, unit, target ratio, measure(target name, url set) -> value
    workloads: list[tuple[str, str, float, Callable[[Target], float]]] = [
        (
            "manifest GET by tag, 64 clients",
            "req/s",
            2.0,
            lambda t: wrk(urls[t.name]["manifest"], s, 64, accept=DOCKER_MANIFEST),
        ),
        (
            "manifest HEAD by tag, 64 clients",
            "req/s",
            2.0,
            lambda t: ab_head(urls[t.name]["manifest"], s, 64, DOCKER_MANIFEST),
        ),
        (
            "blob HEAD, 64 clients",
            "req/s",
            2.0,
            lambda t: ab_head(urls[t.name]["small_blob"], s, 64),
        ),
        (
            "blob GET 256 MiB, 4 clients",
            "MiB/s",
            1.0,
            lambda t: wrk_mib(urls[t.name]["big_blob"], s, 4),
        ),
        (
            "32 concurrent pulls of an 8 MiB blob",
            "MiB/s",
            1.0,
            lambda t: wrk_mib(urls[t.name]["medium_blob"], s, 32),
        ),
        ("200 small blobs pushed by 16 clients", "blobs/s", 1.0, lambda t: small_pushes(t.url)),
        (
            "5,000 tags pushed by 16 clients",
            "tags/s",
            1.5,
            lambda t: tag_pushes(t.url, urls[t.name]["tagged_manifest"].encode()),
        ),
        (
            "256 MiB upload, monolithic (curl)",
            "MiB/s",
            1.2,
            lambda t: upload(t.url, bench.root, None),
        ),
        (
            "256 MiB upload, 16 MiB chunks, one connection",
            "MiB/s",
            1.2,
            lambda t: chunked_upload_keepalive(t.url),
        ),
        (
            "256 MiB upload, 16 MiB chunks, a connection each (curl)",
            "MiB/s",
            1.2,
            lambda t: upload(t.url, bench.root, 16 * MIB),
        ),
        (
            "tags list, 5000 tags in one response",
            "req/s",
            1.5,
            lambda t: wrk(urls[t.name]["tags_all"], s, 8),
        ),
        ("tags list page, n=100", "req/s", 2.0, lambda t: wrk(urls[t.name]["tags_page"], s, 64)),
    ]
    rows = []
    for label, unit, goal, measure in workloads:
        if not chosen(label):
            continue
        row = Row(label, unit, goal, [], [])
        for _ in range(repeats):
            row.ours.append(measure(ours))
            row.reference.append(measure(ref))
        rows.append(row)
        print(
            f"  {label}: ours {statistics.median(row.ours):.1f}, "
            f"distribution {statistics.median(row.reference):.1f} {unit}",
            file=sys.stderr,
        )
    # label, unit, target ratio, ours, nginx serving the same bytes as a static file
    against_static: list[tuple[str, str, float, Callable[[], float], Callable[[], float]]] = [
        (
            "manifest GET by tag, 64 clients, against nginx static",
            "req/s",
            0.12,
            lambda: wrk(urls["ours"]["manifest"], s, 64, accept=DOCKER_MANIFEST),
            lambda: wrk(urls["nginx_manifest"]["static"], s, 64),
        ),
        (
            "blob GET 256 MiB through nginx, 4 clients",
            "MiB/s",
            0.95,
            lambda: wrk_mib(urls["nginx_big"]["accel"], s, 4),
            lambda: wrk_mib(urls["nginx_big"]["static"], s, 4),
        ),
        (
            "32 concurrent pulls of 8 MiB through nginx",
            "MiB/s",
            0.95,
            lambda: wrk_mib(urls["nginx_medium"]["accel"], s, 32),
            lambda: wrk_mib(urls["nginx_medium"]["static"], s, 32),
        ),
    ]
    for label, unit, goal, mine, static in against_static:
        if not chosen(label):
            continue
        row = Row(label, unit, goal, [], [], against="nginx static")
        for _ in range(repeats):
            row.ours.append(mine())
            row.reference.append(static())
        rows.append(row)
    # Lower is better: the slowest of the fast answers, and how evenly the workers share
    # 64 connections that arrive one at a time (benchmarks/workers.py).
    latency = Row(
        "manifest GET p99 latency, 64 clients",
        "ms",
        20.0 if bench.database == "sqlite" else 50.0,
        [],
        [],
        lower=True,
    )
    if chosen(latency.label):
        for _ in range(repeats):
            for target, values in ((ours, latency.ours), (ref, latency.reference)):
                values.append(wrk_p99(urls[target.name]["manifest"], s, 64, DOCKER_MANIFEST))
        rows.append(latency)
    balance = Row(
        "CPU of the busiest worker / the least busy, 64 connections one at a time",
        ": 1",
        1.5,
        [],
        [],
        against="",
        lower=True,
    )
    if chosen(balance.label):
        from benchmarks.workers import gradual

        assert bench.ours.process is not None
        pids = workers_of(bench.ours.process.pid)
        for _ in range(repeats):
            shares = gradual(urls["ours"]["manifest"], pids, s, 64)[2]
            balance.ours.append(max(shares) / min(shares))
        rows.append(balance)
    if memory.ours:
        rows.append(memory)
    return rows


def _commit() -> str:
    found = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return found.stdout.strip() or "unknown"


def _heading(args: argparse.Namespace) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}: {os.cpu_count()} cores "
        f"({cpu}), Python {platform.python_version()}, commit {_commit()}, median of "
        f"{args.repeats} x {args.seconds} s"
    )


def table(rows: list[Row], args: argparse.Namespace, database: str) -> str:
    lines = [
        f"{_heading(args)}, our index on {database}",
        "",
        "| workload | ours | reference | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours = statistics.median(row.ours)
        target = f"< {row.target:g} {row.unit}" if row.lower else f">= {row.target:g}"
        reference, ratio = "-", "-"
        if row.reference:
            reference = f"{statistics.median(row.reference):,.1f} {row.unit}" + (
                " (nginx static)" if row.against == "nginx static" else ""
            )
            ratio = f"{row.ratio:.2f}"
        lines.append(
            f"| {row.label} | {ours:,.2f} {row.unit} | {reference} | {ratio} | "
            f"{target} | {'yes' if row.met else '**no**'} |"
        )
    return "\n".join(lines)


def goals(results: dict[str, list[Row]]) -> str:
    """Issue 36's table: each path on PostgreSQL and on SQLite, as ratios to Distribution
    (or nginx), and whether its goal is met."""

    def row(database: str, label: str) -> Row | None:
        return next((r for r in results[database] if r.label.startswith(label)), None)

    def shown(found: Row | None, suffix: str = "x") -> str:
        return "-" if found is None else f"{found.ratio:.2f}{suffix}"

    def median(found: Row | None) -> float:
        return statistics.median(found.ours) if found else float("nan")

    lines = [
        "| path | PostgreSQL | SQLite | goal | met |",
        "|---|---|---|---|---|",
    ]

    def add(path: str, postgres: str, sqlite: str, goal: str, met: bool) -> None:
        lines.append(f"| {path} | {postgres} | {sqlite} | {goal} | {'yes' if met else '**no**'} |")

    def pair(label: str) -> tuple[Row | None, Row | None]:
        return row("postgresql", label), row("sqlite", label)

    def reached(goal: float, *found: Row | None, lower: bool = False) -> bool:
        """Every row measured, and each ratio at the goal or past it."""
        return all(r is not None and (r.ratio <= goal if lower else r.ratio >= goal) for r in found)

    # Issue 36 sets the tag pushes' goal on both databases, the small pushes' on
    # PostgreSQL (SQLite's is shown beside it).
    for label, path, goal, both in (
        ("5,000 tags", "tag pushes (5,000 by 16 clients)", 1.5, True),
        ("200 small blobs", "small pushes (200 x 1 KiB, 16 clients)", 1.2, False),
    ):
        pg, lite = pair(label)
        add(
            path,
            shown(pg),
            shown(lite),
            f">= {goal}x on " + ("both" if both else "PostgreSQL"),
            reached(goal, pg, lite) if both else reached(goal, pg),
        )
    for label in ("manifest GET by tag, 64 clients", "manifest HEAD", "blob HEAD"):
        pg, lite = pair(label)
        of_sqlite = median(pg) / median(lite)
        add(
            label.removesuffix(", 64 clients") + " (64 connections)",
            f"{shown(pg)}, {of_sqlite:.2f} of SQLite",
            shown(lite),
            ">= 3x, and >= 0.5 of SQLite",
            reached(3, pg) and of_sqlite >= 0.5,
        )
    pg, lite = pair("tags list page")
    add("tag pages (n=100)", shown(pg), shown(lite), "keep (>= 2x)", reached(2, pg, lite))
    pg, lite = pair("CPU of the busiest")
    add(
        "CPU of the busiest worker / the least busy, 64 connections one at a time",
        shown(pg, " : 1"),
        shown(lite, " : 1"),
        "within 1.5 : 1",
        reached(1.5, pg, lite, lower=True),
    )
    lite = row("sqlite", "manifest GET by tag, 64 clients, against nginx")
    add(
        "manifest GET against nginx static (SQLite)", "-", shown(lite), ">= 0.2", reached(0.2, lite)
    )
    pg, lite = pair("manifest GET p99")
    add(
        "manifest GET p99 latency, 64 connections",
        f"{median(pg):.1f} ms",
        f"{median(lite):.1f} ms",
        "<= 20 ms on SQLite, <= 50 ms on PostgreSQL",
        median(lite) <= 20 and median(pg) <= 50,
    )
    pg, lite = pair("32 concurrent pulls of 8 MiB through")
    add(
        "32 x 8 MiB pulls through nginx, of nginx static",
        shown(pg, ""),
        shown(lite, ""),
        ">= 0.95",
        reached(0.95, pg, lite),
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
