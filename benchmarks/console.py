"""The console and the browse API on a big repository: the first page of a repository
with --tags tags (10,000), by name and newest push first, through a real `registry
serve` (SQLite, filesystem, auth off).

    .venv/bin/python benchmarks/console.py [--tags 10000] [--times 20]

Each tag points at an image of its own (its own config and layer), pushed by 16 clients;
the page is fetched --times times after one cold fetch, and the median is shown.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.compare import DOCKER_MANIFEST  # noqa: E402
from benchmarks.http1 import Connection, rate  # noqa: E402
from tests.peers.registry import RegistryProcess  # noqa: E402


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push(conn: Connection, tag: str) -> None:
    config = json.dumps(
        {"created": "2026-11-30T12:00:00Z", "os": "linux", "architecture": "amd64", "tag": tag}
    ).encode()
    layer = f"layer of {tag}".encode()
    for data in (config, layer):
        status, _, body = await conn.request(
            "POST", f"/v2/bench/big/blobs/uploads/?digest={digest_of(data)}", data
        )
        assert status == 201, body
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": digest_of(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    status, _, body = await conn.request(
        "PUT", f"/v2/bench/big/manifests/{tag}", manifest, content_type=DOCKER_MANIFEST
    )
    assert status == 201, body


def timed(client: httpx.Client, path: str, times: int) -> tuple[float, float]:
    """(cold, median warm) milliseconds for GET `path`."""
    samples = []
    for _ in range(times + 1):
        begun = time.perf_counter()
        r = client.get(path)
        samples.append((time.perf_counter() - begun) * 1000)
        assert r.status_code == 200, r.text[:300]
    return samples[0], statistics.median(samples[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--times", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-console-"))
    server = RegistryProcess(root / "data", {"REGISTRY_LOG_LEVEL": "warning"}).start()
    try:
        tags = [f"v{i:05d}" for i in range(args.tags)]
        pushed = rate(server.url, tags, 16, push)
        print(f"pushed {args.tags:,} tags at {pushed:,.0f} tags/s", file=sys.stderr)
        rows = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for label, path in (
                ("console, tags by name (50)", "/ui/r/bench/big/-/tags"),
                ("console, tags newest first (50)", "/ui/r/bench/big/-/tags?sort=pushed"),
                ("API, tags by name (100)", "/api/v1/repositories/bench/big/-/tags"),
                (
                    "API, tags newest first (100)",
                    "/api/v1/repositories/bench/big/-/tags?sort=pushed",
                ),
                ("console, repositories", "/ui/"),
            ):
                cold, warm = timed(client, path, args.times)
                rows.append(f"| {label} | {cold:.0f} ms | {warm:.0f} ms |")
    finally:
        server.stop()
    print(f"{args.tags:,} tags in one repository, first page, {args.times} fetches\n")
    print("| page | first fetch | median after |\n|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
